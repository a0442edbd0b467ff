"""The Socket.IO packet class of this server: python-socketio's, strict about what clients send,
and without a full walk of text payloads it sends.

Reading: python-socketio decodes whatever arrives and trusts its shape: an empty packet, an event
that is not ``[name, ...]``, a name that is not a string, a placeholder for an attachment that
never came all raised inside its message handler (a traceback per packet, and the caller got no
answer); and an event named ``disconnect`` or ``connect`` from a client ran the namespace's own
``on_disconnect`` / ``on_connect`` (``disconnect`` released the link's revocation grant while the
link stayed open). Here such packets raise :class:`MalformedPacket`, which
:mod:`.engineio_guard` turns into an error acknowledgement (when the packet asked for one) or a
line in the log. Reserved names are those socket.io-parser refuses (4.2.3 and later).

Sending: python-socketio checks every payload it sends for ``bytes`` (to split them into
attachments) by walking every list item and dict value, on every emit. For ``unit_positions`` (up
to 1,000 units per event, four events a second with thousands of units) that walk cost about 5%
of the server's CPU in the geo benchmark. Payloads built as :class:`TextOnly` are known to hold
only JSON types and skip it; everything else is checked as before.
"""

from __future__ import annotations

from typing import Any

from socketio import packet

RESERVED_EVENTS = frozenset({"connect", "connect_error", "disconnect", "disconnecting", "newListener",
                             "removeListener"})
MAX_ATTACHMENTS = 4  # binary parts one packet may announce (the server's own events use one)
_UNSET: Any = object()


class MalformedPacket(ValueError):
    """A packet a client sent that is not Socket.IO; ``id`` and ``namespace`` when they could be read."""

    def __init__(self, reason: str, namespace: str | None = None, id: int | None = None,
                 event: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.namespace = namespace
        self.id = id
        self.event = event  # an EVENT or BINARY_EVENT: a call that may be answered with an error


class TextOnly(dict):  # type: ignore[type-arg]
    """A payload that holds only JSON types (no ``bytes`` anywhere), so it is not searched."""


class Packet(packet.Packet):  # type: ignore[misc]
    def __init__(self, packet_type: int = packet.EVENT, data: Any = None, namespace: str | None = None,
                 id: int | None = None, binary: bool | None = None, encoded_packet: Any = _UNSET) -> None:
        if encoded_packet is not _UNSET and (not isinstance(encoded_packet, str) or not encoded_packet):
            # python-socketio would read an empty message as an EVENT without data, and bytes
            # without an announcing packet as whatever their first byte says
            raise MalformedPacket(f"expected a text packet, got {type(encoded_packet).__name__} "
                                  f"of length {len(encoded_packet) if encoded_packet else 0}")
        super().__init__(packet_type, data, namespace, id, binary,
                         None if encoded_packet is _UNSET else encoded_packet)

    def decode(self, encoded_packet: str) -> int:
        try:
            count = int(super().decode(encoded_packet))
        except (ValueError, TypeError, IndexError, KeyError, RecursionError) as exc:
            # json.JSONDecodeError is a ValueError; RecursionError: JSON nested past the interpreter
            event = self.packet_type in (packet.EVENT, packet.BINARY_EVENT)
            raise MalformedPacket(f"not a Socket.IO packet: {type(exc).__name__}: {str(exc)[:80]}",
                                  self.namespace, self.id, event) from None
        is_event = self.packet_type in (packet.EVENT, packet.BINARY_EVENT)
        if self.packet_type not in range(len(packet.packet_names)):
            raise MalformedPacket(f"unknown packet type {self.packet_type!r}")
        if count > MAX_ATTACHMENTS:
            raise MalformedPacket(f"{count} binary attachments announced; at most {MAX_ATTACHMENTS}",
                                  self.namespace, self.id, is_event)
        if is_event:
            if not isinstance(self.data, list) or not self.data or not isinstance(self.data[0], str):
                raise MalformedPacket("an event is [name, data]: a list whose first item is the name",
                                      self.namespace, self.id, True)
            if self.data[0] in RESERVED_EVENTS:
                raise MalformedPacket(f"{self.data[0]!r} is a reserved name, not an event", self.namespace,
                                      self.id, True)
        elif self.packet_type == packet.CONNECT and self.data is not None and not isinstance(self.data, dict):
            raise MalformedPacket("connect data must be an object (the auth)", self.namespace)
        elif self.packet_type in (packet.ACK, packet.BINARY_ACK) and not isinstance(self.data, list):
            raise MalformedPacket("an acknowledgement is a list", self.namespace)
        return count

    @classmethod
    def _reconstruct_binary_internal(cls, data: Any, attachments: list[bytes]) -> Any:
        """As python-socketio's, but a placeholder naming no attachment stays what it is (the
        handler then refuses a dict where it wanted bytes) instead of raising."""
        if isinstance(data, dict) and data.get("_placeholder") and "num" in data:
            num = data["num"]
            if isinstance(num, int) and not isinstance(num, bool) and 0 <= num < len(attachments):
                return attachments[num]
            return data
        if isinstance(data, list):
            return [cls._reconstruct_binary_internal(item, attachments) for item in data]
        if isinstance(data, dict):
            return {key: cls._reconstruct_binary_internal(value, attachments) for key, value in data.items()}
        return data

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        if type(data) is TextOnly:
            return False
        if isinstance(data, list) and data and type(data[-1]) is TextOnly:
            # an emit's packet data is [event, payload]
            return any(cls.data_is_binary(item) for item in data[:-1])
        return bool(super().data_is_binary(data))

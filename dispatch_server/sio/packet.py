"""The Socket.IO packet class of this server: python-socketio's, minus a full walk of text payloads.

python-socketio checks every payload it sends for ``bytes`` (to split them into attachments)
by walking every list item and dict value, on every emit. For ``unit_positions`` (up to 1,000
units per event, four events a second with thousands of units) that walk cost about 5% of the
server's CPU in the geo benchmark. Payloads built as :class:`TextOnly` are known to hold only
JSON types and skip it; everything else is checked as before.
"""

from __future__ import annotations

from typing import Any

from socketio import packet


class TextOnly(dict):  # type: ignore[type-arg]
    """A payload that holds only JSON types (no ``bytes`` anywhere), so it is not searched."""


class Packet(packet.Packet):  # type: ignore[misc]
    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        if type(data) is TextOnly:
            return False
        if isinstance(data, list) and data and type(data[-1]) is TextOnly:
            # an emit's packet data is [event, payload]
            return any(cls.data_is_binary(item) for item in data[:-1])
        return bool(super().data_is_binary(data))

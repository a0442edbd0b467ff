"""The unit's Socket.IO link (namespace ``/unit``): publish offers, positions, instructions.

One :class:`UnitLink` is one connection; the unit builds a new one for every attempt rather than
using python-socketio's own reconnection, so that a reconnect also re-publishes media and the
retry timing follows the unit's backoff. ``lost`` is set when the link drops.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from typing import Any, Awaitable, Callable, Sequence

import msgpack
import socketio
import socketio.exceptions

from geo.fix import Fix
from utctime import iso_millis

from .errors import LinkError, rejection

logger = logging.getLogger(__name__)

NAMESPACE = "/unit"
LinkHandler = Callable[["UnitLink", Any], Awaitable[Any]]  # (the link it came on, the event's data)
ACK_TIMEOUT = "ack_timeout"  # LinkError.code when the server did not acknowledge in time


def _optional_fields(fix: Fix) -> dict[str, float]:
    """``alt``, ``accuracy``, ``speed``, ``heading`` to 2 places, each left out when unknown."""
    return {key: round(value, 2) for key in ("alt", "accuracy", "speed", "heading")
            if (value := getattr(fix, key)) is not None}


def position_message(fix: Fix) -> dict[str, Any]:
    """The ``position`` event payload: degrees to 7 places (~1 cm), ``ts`` as ISO 8601 UTC with
    milliseconds (:func:`utctime.iso_millis`). The unit rounds its fixes' times to whole
    milliseconds, so this ``ts`` names exactly the time of the fix's copy in a ``positions`` batch."""
    return {"lat": round(fix.lat, 7), "lon": round(fix.lon, 7), **_optional_fields(fix), "ts": iso_millis(fix.ts)}


def fix_record(fix: Fix) -> dict[str, Any]:
    """One fix of a ``positions`` batch: ``ts`` as epoch seconds, unknown fields left out."""
    return {"lat": round(fix.lat, 7), "lon": round(fix.lon, 7), "ts": fix.ts, **_optional_fields(fix)}


def positions_payload(batch: Sequence[Fix]) -> bytes:
    """The ``positions`` event data: msgpack of the list of fix records, oldest first."""
    payload: bytes = msgpack.packb([fix_record(p) for p in batch])
    return payload


def _error_of(ack: Any) -> tuple[str, str]:
    if isinstance(ack, dict) and isinstance(ack.get("error"), dict):
        err = ack["error"]
        return str(err.get("code") or "unknown"), str(err.get("message") or "no message")
    return "bad_ack", f"unexpected acknowledgement {ack!r:.200}"


class UnitLink:
    """A Socket.IO connection to ``{server}/socket.io`` as ``unit_id``."""

    def __init__(
        self,
        server: str,
        unit_id: str,
        token: str,
        *,
        connect_timeout_s: float = 10.0,
        ack_timeout_s: float = 10.0,
        handlers: dict[str, LinkHandler] | None = None,
    ) -> None:
        self.server = server
        self.unit_id = unit_id
        self._token = token
        self._connect_timeout_s = connect_timeout_s
        self._ack_timeout_s = ack_timeout_s
        self.lost = asyncio.Event()
        self._refusal: tuple[str, str] | None = None
        self._closed = False
        # The unit runs its own backoff and signal handling; the client must do neither.
        self._sio = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        self._sio.on("connect_error", self._handle_connect_error, namespace=NAMESPACE)
        self._sio.on("disconnect", self._handle_disconnect, namespace=NAMESPACE)
        for event, handler in (handlers or {}).items():
            # python-socketio awaits a handler only if it is a coroutine function; anything else
            # (a lambda returning a coroutine) is called and its coroutine dropped unawaited.
            if not inspect.iscoroutinefunction(handler):
                raise TypeError(f"handler for {event!r} must be an async function, got {handler!r}")
            self._sio.on(event, functools.partial(handler, self), namespace=NAMESPACE)

    async def _handle_connect_error(self, data: Any = None) -> None:
        # The server refuses with ConnectionRefusedError(message, {"code", "message"}), which
        # arrives as {"message": ..., "data": {"code": ..., "message": ...}}.
        if isinstance(data, dict) and isinstance(data.get("data"), dict):
            data = data["data"]
        if isinstance(data, dict):
            self._refusal = (str(data.get("code") or "refused"), str(data.get("message") or data))
        else:
            self._refusal = ("refused", str(data))

    async def _handle_disconnect(self, reason: Any = None) -> None:
        if not self._closed:
            logger.info("unit %s: Socket.IO link lost (%s)", self.unit_id, reason)
        self.lost.set()

    async def connect(self) -> None:
        """Connect and join ``/unit``; :class:`LinkError` carries the server's refusal code."""
        try:
            await asyncio.wait_for(
                self._sio.connect(
                    self.server,
                    auth={"token": self._token, "unit_id": self.unit_id},
                    namespaces=[NAMESPACE],
                    transports=["websocket"],
                    socketio_path="socket.io",
                    wait_timeout=self._connect_timeout_s,
                ),
                timeout=self._connect_timeout_s + 1,
            )
        except (socketio.exceptions.ConnectionError, TimeoutError, OSError) as exc:
            await self.close()
            if self._refusal is not None:
                code, message = self._refusal
                raise LinkError(f"server refused the connection: {code}: {message}", code) from exc
            raise LinkError(f"cannot connect to {self.server}: {exc or type(exc).__name__}") from exc

    async def _call(self, event: str, data: dict[str, Any] | bytes) -> Any:
        """The acknowledgement of ``event``. A link lost meanwhile fails the call at once (python-socketio
        would wait out the whole timeout): whatever waits on it, such as the instruction inbox, is free
        for the next link, which may be to another node, within the reconnect delay."""
        if self.lost.is_set():
            raise LinkError(f"{event!r} not sent: the link is down")
        call = asyncio.ensure_future(self._sio.call(event, data, namespace=NAMESPACE, timeout=self._ack_timeout_s))
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            await asyncio.wait({call, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not call.done():
                call.cancel()
            await asyncio.wait({call, lost})
        if call.cancelled():
            raise LinkError(f"link lost before {event!r} was acknowledged")
        try:
            return call.result()
        except socketio.exceptions.TimeoutError as exc:
            raise LinkError(f"no acknowledgement for {event!r} within {self._ack_timeout_s:g} s",
                            ACK_TIMEOUT) from exc
        except socketio.exceptions.SocketIOError as exc:
            raise LinkError(f"{event!r} failed: {exc}") from exc

    async def call(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        """Any request with an acknowledgement; a refusal raises :class:`LinkError` with its code."""
        ack = await self._call(event, data)
        if isinstance(ack, dict) and ack.get("ok") is True:
            return ack
        code, message = _error_of(ack)
        raise LinkError(f"{event} refused: {code}: {message}", code)

    async def publish(self, offer_sdp: str) -> tuple[str, str]:
        """Send the offer; returns ``(answer_sdp, session_id)`` or raises ``PublishRejected``."""
        ack = await self._call("publish", {"sdp": offer_sdp})
        if isinstance(ack, dict) and ack.get("ok") is True and isinstance(ack.get("sdp"), str):
            return ack["sdp"], str(ack.get("session_id", ""))
        raise rejection(*_error_of(ack))

    async def unpublish(self, session_id: str) -> None:
        """Tell the server the session ends; failures are logged, not raised."""
        try:
            ack = await self._call("unpublish", {"session_id": session_id})
        except LinkError as exc:
            logger.info("unit %s: unpublish of %s not acknowledged: %s", self.unit_id, session_id, exc)
            return
        if not (isinstance(ack, dict) and ack.get("ok") is True):
            logger.info("unit %s: unpublish of %s refused: %s", self.unit_id, session_id, _error_of(ack))

    async def send_position(self, position: Fix) -> bool:
        """Report a fix; True when the server acknowledged it as accepted."""
        ack = await self._call("position", position_message(position))
        if isinstance(ack, dict) and ack.get("ok") is True:
            return True
        logger.warning("unit %s: position refused: %s: %s", self.unit_id, *_error_of(ack))
        return False

    async def send_positions(self, batch: Sequence[Fix]) -> dict[str, Any]:
        """Report fixes as one binary ``positions`` event; returns the ``{"ok": true, ...}`` ack.

        A refusal raises :class:`LinkError` with the server's code, a missing acknowledgement
        one with code ``ack_timeout`` (also what a server without a ``positions`` handler gives).
        """
        ack = await self._call("positions", positions_payload(batch))
        if isinstance(ack, dict) and ack.get("ok") is True:
            return ack
        code, message = _error_of(ack)
        raise LinkError(f"positions refused: {code}: {message}", code)

    async def close(self) -> None:
        """Disconnect; idempotent."""
        self._closed = True
        try:
            await self._sio.disconnect()
        except Exception:  # a half-open transport may fail to say goodbye; we are leaving anyway
            logger.debug("unit %s: error while disconnecting", self.unit_id, exc_info=True)
        self.lost.set()

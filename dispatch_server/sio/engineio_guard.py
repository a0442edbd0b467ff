"""What reaches python-engineio and python-socketio from a client, checked first (issue #14).

Engine.IO needs no credentials, so a stranger can send it anything. Before this module:

- a polling POST whose body never came was read without a deadline, and a body that was not
  UTF-8 or not Engine.IO (``zzz``, an empty packet, ``d=`` without JSONP) raised inside
  python-engineio, which logged a traceback per request;
- a websocket frame that was not an Engine.IO packet (``zzz``, empty, ``4[[[…`` nested past the
  interpreter's limit) raised out of python-engineio's websocket handler: a traceback in aiohttp's
  log per frame;
- a Socket.IO packet that was not one (see :mod:`.packet`) raised inside python-socketio's message
  handler: a traceback, and a caller who asked for an acknowledgement never got one.

Here polling bodies are read through :func:`~dispatch_server.http.request.read_body` (the route's
size limit, ``server.body_timeout_s``) and checked (400 ``bad_packet``); websocket frames that are
not Engine.IO are dropped with a line in the log; a malformed Socket.IO packet is answered with
``{"ok": false, "error": {"code": "bad_packet", ...}}`` when it was a call that carried an ack id,
and otherwise dropped with a line in the log. Counters: :class:`WireStats`.

Hooks (fenced here; ``tests/dispatch_server/test_socketio_fuzz.py`` pins the behaviour):
python-engineio's per-server driver table ``eio._async`` (its ``translate_request`` and
``websocket`` entries for aiohttp), and the Engine.IO ``message`` handler (``eio.on``).
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import socketio
from aiohttp import web
from engineio import payload
from engineio.async_drivers import aiohttp as aiohttp_driver
from socketio import packet as sio_packet

from ..errors import BadRequest, sio_error
from .packet import MalformedPacket, Packet

logger = logging.getLogger(__name__)

PACKET_TYPES = "0123456"  # Engine.IO: open, close, ping, pong, message, upgrade, noop


@dataclass
class WireStats:
    bad_frames: int = 0  # websocket frames that were not Engine.IO, dropped
    bad_bodies: int = 0  # polling POST bodies refused with 400
    bad_packets: int = 0  # Socket.IO packets that were not, answered or dropped


def engineio_problem(text: str) -> str | None:
    """Why ``text`` is not an Engine.IO packet this server reads; None when it is one."""
    if not text:
        return "empty packet"
    kind = text[0]
    if kind == "b":  # a binary message, base64 (polling)
        try:
            base64.b64decode(text[1:], validate=True)
        except (binascii.Error, ValueError):
            return "binary message that is not base64"
        return None
    if kind not in PACKET_TYPES:
        return f"unknown packet type {kind!r}"
    if kind == "4":
        # a message carries a Socket.IO packet, which starts with its type digit; anything else
        # python-engineio would try to read as JSON (with no bound on nesting)
        return None if text[1:2].isdigit() else "a message must carry a Socket.IO packet"
    if text[1:] not in ("", "probe"):
        return "control packets carry nothing but 'probe'"
    return None


class _Body:
    """A polling body already read and checked, handed to python-engineio as ``wsgi.input``."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def read(self, n: int = -1) -> bytes:
        out = self._data if n < 0 else self._data[:n]
        self._data = self._data[len(out):]
        return out


ReadBody = Callable[[web.Request, int, str], Awaitable[bytes]]  # http.request.read_body


class EngineIOGuard:
    def __init__(self, sio: socketio.AsyncServer, read_body: ReadBody) -> None:
        self._sio = sio
        self._read_body = read_body
        self.stats = WireStats()
        eio = sio.eio
        self._limit = int(eio.max_http_buffer_size)
        self._max_packets = int(payload.Payload.max_decode_packets)
        guard = self

        class GuardedWebSocket(aiohttp_driver.WebSocket):  # type: ignore[misc]
            async def wait(self) -> Any:
                while True:
                    data = await super().wait()
                    problem = None if isinstance(data, bytes) else engineio_problem(data)
                    if problem is None:
                        return data
                    guard.stats.bad_frames += 1
                    logger.info("Engine.IO websocket frame dropped: %s (%d so far)", problem, guard.stats.bad_frames)

        eio._async = {**eio._async, "translate_request": self._translate, "websocket": GuardedWebSocket}
        self._message = eio.handlers["message"]
        eio.on("message", self._on_message)

    async def _translate(self, request: web.Request) -> dict[str, Any]:
        environ: dict[str, Any] = aiohttp_driver.translate_request(request)
        if request.method != "POST":
            return environ
        raw = await self._read_body(request, self._limit, "Engine.IO payload")  # 413, 408 body_timeout
        try:
            text = raw.decode("utf-8")
            if text.startswith("d="):
                raise ValueError("JSONP polling is not served")
            packets = text.split("\x1e") if text else []
            if len(packets) > self._max_packets:
                raise ValueError(f"{len(packets)} packets in one payload; at most {self._max_packets}")
            for item in packets:
                problem = engineio_problem(item)
                if problem is not None:
                    raise ValueError(problem)
        except ValueError as exc:  # UnicodeDecodeError is one
            self.stats.bad_bodies += 1
            raise BadRequest(f"Engine.IO payload: {exc}"[:200], code="bad_packet") from None
        environ["wsgi.input"] = _Body(raw)
        environ["CONTENT_LENGTH"] = str(len(raw))
        return environ

    async def _on_message(self, eio_sid: str, data: Any) -> None:
        try:
            await self._message(eio_sid, data)
        except MalformedPacket as exc:
            self.stats.bad_packets += 1
            logger.info("Socket.IO packet from %s refused: %s (%d so far)", eio_sid, exc.reason, self.stats.bad_packets)
            if exc.event and exc.id is not None:
                error = BadRequest(f"not a Socket.IO event: {exc.reason}"[:200], code="bad_packet")
                ack = Packet(sio_packet.ACK, data=[sio_error(error)], namespace=exc.namespace, id=exc.id)
                await self._sio.eio.send(eio_sid, ack.encode())

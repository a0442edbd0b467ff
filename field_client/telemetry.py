"""The unit's telemetry channel: GPS fix batches over a websocket of their own, ``/telemetry/{unit_id}``.

Positions are the one thing a unit sends every second, so the server takes them on a plain
websocket (one binary msgpack frame per batch, one back per acknowledgement) rather than as
Socket.IO events, which cost it several times more per batch (docs/api.md, "Telemetry
channel"). The Socket.IO link stays for everything else. A :class:`TelemetryLink` implements
:class:`field_client.gps_buffer.PositionLink`, so the uploader drains the fix buffer over it
exactly as over the Socket.IO link: one batch in flight, released only once acknowledged.

One :class:`TelemetryLink` is one connection; ``lost`` is set when it drops. A server without
the channel answers the upgrade with 404: :meth:`connect` then raises :class:`Unsupported` and
the unit sends its positions over the Socket.IO link instead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Sequence

import aiohttp
import msgpack

from geo.fix import Fix

from .errors import LinkError
from .link import ACK_TIMEOUT, fix_record

logger = logging.getLogger(__name__)

HEARTBEAT_S = 20.0  # the client pings too, so a dead path is noticed from this side as well


class Unsupported(LinkError):
    """The server has no telemetry channel (404 at the upgrade)."""


class TelemetryLink:
    """A websocket to ``{server}/telemetry/{unit_id}``; replies are matched to batches by ``seq``."""

    def __init__(self, server: str, unit_id: str, token: str, *, connect_timeout_s: float = 10.0,
                 ack_timeout_s: float = 10.0) -> None:
        self.server = server.rstrip("/")
        self.unit_id = unit_id
        self._token = token
        self._connect_timeout_s = connect_timeout_s
        self._ack_timeout_s = ack_timeout_s
        self.lost = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._seq = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._closed = False

    async def connect(self) -> None:
        """Open the channel; :class:`Unsupported` for a server without one, :class:`LinkError` otherwise."""
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=self._connect_timeout_s))
        url = f"{self.server}/telemetry/{self.unit_id}"
        try:
            self._ws = await asyncio.wait_for(
                self._http.ws_connect(url, headers={"Authorization": f"Bearer {self._token}"},
                                      heartbeat=HEARTBEAT_S, autoping=True),
                timeout=self._connect_timeout_s)
        except aiohttp.WSServerHandshakeError as exc:
            await self.close()
            if exc.status == 404:
                raise Unsupported(f"{url}: the server has no telemetry channel (404)", "unsupported") from exc
            raise LinkError(f"telemetry channel refused: HTTP {exc.status} {exc.message}",
                            "unauthorized" if exc.status in (401, 403) else None) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self.close()
            raise LinkError(f"cannot open the telemetry channel {url}: {exc or type(exc).__name__}") from exc
        self._reader = asyncio.create_task(self._read(self._ws), name=f"{self.unit_id}-telemetry")

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.BINARY:
                    logger.warning("unit %s: unexpected telemetry frame %s", self.unit_id, msg.type.name)
                    continue
                try:
                    reply = msgpack.unpackb(msg.data, raw=False)
                except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
                    logger.warning("unit %s: unreadable telemetry reply: %s", self.unit_id, exc)
                    continue
                seq = reply.get("seq") if isinstance(reply, dict) else None
                fut = self._waiting.pop(seq, None) if isinstance(seq, int) else None
                if fut is not None and not fut.done():
                    fut.set_result(reply)
                elif isinstance(reply, dict) and reply.get("ok") is False:
                    logger.warning("unit %s: telemetry error: %s", self.unit_id, reply.get("error"))
        finally:
            if not self._closed:
                logger.info("unit %s: telemetry channel lost (%s)", self.unit_id, ws.close_code)
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(LinkError("telemetry channel closed before the acknowledgement"))
            self._waiting.clear()
            self.lost.set()

    async def send_positions(self, batch: Sequence[Fix]) -> dict[str, Any]:
        """One batch; the ``{"ok": true, ...}`` reply, or :class:`LinkError` with the server's code."""
        ws = self._ws
        if ws is None or ws.closed or self.lost.is_set():
            raise LinkError("telemetry channel is closed")
        seq = self._seq
        self._seq += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[seq] = fut
        try:
            await ws.send_bytes(msgpack.packb({"seq": seq, "fixes": [fix_record(p) for p in batch]}))
            reply = await asyncio.wait_for(fut, self._ack_timeout_s)
        except TimeoutError as exc:
            raise LinkError(f"no telemetry acknowledgement within {self._ack_timeout_s:g} s", ACK_TIMEOUT) from exc
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise LinkError(f"telemetry send failed: {exc}") from exc
        finally:
            self._waiting.pop(seq, None)
        if reply.get("ok") is True:
            return reply
        err = reply.get("error")
        if not isinstance(err, dict):
            err = {}
        code = str(err.get("code") or "unknown")
        raise LinkError(f"positions refused: {code}: {err.get('message') or 'no message'}", code)

    async def send_position(self, position: Fix) -> bool:
        """A batch of one (the uploader's single-fix mode is for Socket.IO servers without batches)."""
        try:
            ack = await self.send_positions([position])
        except LinkError as exc:
            if exc.code == "bad_message":
                return False
            raise
        return not ack.get("rejected")

    async def close(self) -> None:
        """Close the channel; idempotent."""
        self._closed = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        self.lost.set()

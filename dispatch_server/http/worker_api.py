"""The internal API of a media worker (``dispatch-server media-worker``), for its front only.

Bound to 127.0.0.1; every request carries the per-boot secret the front handed the worker
(``X-Worker-Secret``). JSON requests: ``POST /publish``, ``POST /watch``, ``POST /close``; one
websocket ``GET /events`` carries msgpack messages both ways (:mod:`dispatch_server.media_worker`).
An offer the worker cannot take answers 400 with ``{"error": {"code": "bad_sdp" | "codec_mismatch"}}``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any, Awaitable

import msgpack
from aiohttp import WSMsgType, web

from media.errors import CodecMismatch, SdpError
from media.session import END_SETTLE_S

from ..appkeys import WORKER, WORKER_SECRET

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()
SECRET_HEADER = "X-Worker-Secret"


def _check(request: web.Request) -> None:
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), request.app[WORKER_SECRET].encode()):
        raise web.HTTPForbidden(text="not this worker's front")


async def _body(request: web.Request) -> dict[str, Any]:
    _check(request)
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="a JSON object expected") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="a JSON object expected")
    return body


def _refused(code: str, exc: Exception) -> web.Response:
    return web.json_response({"error": {"code": code, "message": str(exc)}}, status=400)


async def _answered(answering: Awaitable[Any]) -> web.Response:
    """A session's answer as JSON, or the offer refused (400 with the code the front maps back)."""
    try:
        return web.json_response(await answering)
    except CodecMismatch as exc:
        return _refused("codec_mismatch", exc)
    except SdpError as exc:
        return _refused("bad_sdp", exc)


@routes.post("/publish")
async def publish(request: web.Request) -> web.Response:
    b = await _body(request)
    return await _answered(request.app[WORKER].publish(str(b["unit"]), str(b["channel"]), str(b["offer"]),
                                                       float(b["timeout_s"])))


@routes.post("/watch")
async def watch(request: web.Request) -> web.Response:
    b = await _body(request)
    return await _answered(request.app[WORKER].watch(str(b["unit"]), str(b["channel"]), str(b["offer"]),
                                                     str(b["viewer"])))


@routes.post("/close")
async def close(request: web.Request) -> web.Response:
    b = await _body(request)
    found = await request.app[WORKER].close_session(str(b["session"]), str(b["reason"]),
                                                    min(float(b.get("settle_s", 0.0)), END_SETTLE_S))
    return web.json_response({"closed": found})


@routes.get("/events")
async def events(request: web.Request) -> web.WebSocketResponse:
    """The front's one event stream: this worker's events out, the front's commands in."""
    _check(request)
    worker = request.app[WORKER]
    ws = web.WebSocketResponse(max_msg_size=0)
    await ws.prepare(request)

    async def send() -> None:
        while True:
            await ws.send_bytes(msgpack.packb(await worker.next_batch()))

    sender = asyncio.get_running_loop().create_task(send(), name="worker-events")
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                message = msgpack.unpackb(msg.data)
                if isinstance(message, dict):
                    worker.command(message)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    return ws

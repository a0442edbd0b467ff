"""Edge of the telemetry channel: ``GET /telemetry/{unit_id}`` upgrades to a websocket of fix batches.

The protocol and why it exists are in :mod:`dispatch_server.http.telemetry_frames`; this module only
authenticates, upgrades and pumps frames.
"""

from __future__ import annotations

import logging

import msgpack
from aiohttp import WSCloseCode, WSMsgType, web

from ..appkeys import AUTH, POSITIONS, REVOCATION, SETTINGS, TELEMETRY
from ..auth import bearer, check_unit_id
from .telemetry_frames import answer_batch, text_frame_reply

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()


@routes.get("/telemetry/{unit_id}")
async def telemetry(request: web.Request) -> web.WebSocketResponse:
    unit_id = check_unit_id(request.match_info["unit_id"])
    unit = await request.app[AUTH].unit(unit_id, bearer(request.headers.get("Authorization")))
    settings = request.app[SETTINGS]
    hub, positions = request.app[TELEMETRY], request.app[POSITIONS]
    ws = web.WebSocketResponse(heartbeat=settings.geo.telemetry_heartbeat_s,
                               max_msg_size=settings.server.max_message_bytes, compress=False)
    await ws.prepare(request)
    hub.opened(ws)

    async def revoke(reason: str) -> None:
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=reason[:120].encode())

    grant = request.app[REVOCATION].unit_opened(unit_id, unit.token_hash, "telemetry channel", revoke)
    logger.info("unit %s: telemetry channel open", unit_id)
    packb = msgpack.Packer().pack
    try:
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                reply = await answer_batch(positions, hub.stats, unit_id, msg.data)
            elif msg.type is WSMsgType.TEXT:
                reply = text_frame_reply(hub.stats)
            else:  # ERROR (e.g. a frame over max_message_bytes): aiohttp has closed the socket
                logger.info("unit %s: telemetry channel error: %s", unit_id, ws.exception())
                break
            if ws.closed:
                break
            try:
                await ws.send_bytes(packb(reply))
            except ConnectionResetError:  # the unit went away while its batch was stored
                break
    finally:
        request.app[REVOCATION].released(grant)
        hub.closed(ws)
        logger.info("unit %s: telemetry channel closed (%s)", unit_id, ws.close_code)
    return ws

"""WHIP ingest (RFC 9725) and WHEP playback over plain HTTP, so any WebRTC client can take part.

No trickle ICE: the 201 answer carries every candidate, so PATCH answers 405.
"""

from __future__ import annotations

from aiohttp import web

from ..appkeys import AUTH, LIVE, NODE_TOKENS
from ..auth import bearer, check_unit_id
from ..node_tokens import is_node_token
from .request import client_ip, person_of
from .sdp import read_sdp, sdp_created

routes = web.RouteTableDef()

@routes.post("/whip/{unit_id}")
async def whip_publish(request: web.Request) -> web.Response:
    unit_id = check_unit_id(request.match_info["unit_id"])
    unit = await request.app[AUTH].unit(unit_id, bearer(request.headers.get("Authorization")))
    offer = await read_sdp(request)
    session_id, answer = await request.app[LIVE].publish(unit_id, offer, via="whip", credential=unit.token_hash)
    return sdp_created(request, f"/whip/{unit_id}/{session_id}", answer)


@routes.delete("/whip/{unit_id}/{session_id}")
async def whip_delete(request: web.Request) -> web.Response:
    unit_id = check_unit_id(request.match_info["unit_id"])
    await request.app[AUTH].unit(unit_id, bearer(request.headers.get("Authorization")))
    await request.app[LIVE].unpublish(unit_id, request.match_info["session_id"])
    return web.Response(status=200)


@routes.post("/whep/{unit_id}")
async def whep_watch(request: web.Request) -> web.Response:
    unit_id = check_unit_id(request.match_info["unit_id"])
    token = bearer(request.headers.get("Authorization"))
    if token is not None and is_node_token(token):  # another node pulls the unit (dispatch_server.pulls)
        node = await request.app[NODE_TOKENS].check(token, unit_id, client_ip(request))
        offer = await read_sdp(request)
        session_id, answer = await request.app[LIVE].watch_for_node(unit_id, offer, node)
    else:
        person = await person_of(request, "live.watch")
        offer = await read_sdp(request)
        session_id, answer = await request.app[LIVE].watch(unit_id, offer, person)
    return sdp_created(request, f"/whep/{unit_id}/{session_id}", answer)


@routes.delete("/whep/{unit_id}/{session_id}")
async def whep_delete(request: web.Request) -> web.Response:
    token = bearer(request.headers.get("Authorization"))
    if token is not None and is_node_token(token):
        unit_id = check_unit_id(request.match_info["unit_id"])
        node = await request.app[NODE_TOKENS].check(token, unit_id, client_ip(request))
        await request.app[LIVE].unwatch_for_node(unit_id, request.match_info["session_id"], node)
        return web.Response(status=200)
    person = await person_of(request, "live.watch")
    await request.app[LIVE].unwatch(request.match_info["unit_id"], request.match_info["session_id"], person)
    return web.Response(status=200)


async def _no_trickle(request: web.Request) -> web.Response:
    return web.json_response(
        {"error": {"code": "trickle_not_supported",
                   "message": "trickle ICE is not supported: the answer has all candidates"}},
        status=405,
        headers={"Allow": "DELETE"},
    )


routes.route("PATCH", "/whip/{unit_id}/{session_id}")(_no_trickle)
routes.route("PATCH", "/whep/{unit_id}/{session_id}")(_no_trickle)

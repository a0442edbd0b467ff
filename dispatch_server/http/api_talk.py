"""HTTP API of talk-back: an operator's push-to-talk offer (SDP in, SDP answer out) and its end."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import TALK
from ..auth import check_unit_id
from .request import person_of
from .sdp import read_sdp, sdp_created

routes = web.RouteTableDef()


@routes.post("/api/talk/{unit_id}")
async def talk_start(request: web.Request) -> web.Response:
    unit_id = check_unit_id(request.match_info["unit_id"])
    person = await person_of(request, "live.watch")
    offer = await read_sdp(request)
    talk_id, answer = await request.app[TALK].start(unit_id, offer, person)
    return sdp_created(request, f"/api/talk/{unit_id}/{talk_id}", answer)


@routes.delete("/api/talk/{unit_id}/{talk_id}")
async def talk_stop(request: web.Request) -> web.Response:
    person = await person_of(request, "live.watch")
    await request.app[TALK].stop(request.match_info["unit_id"], request.match_info["talk_id"], person)
    return web.Response(status=200)

"""WHIP ingest (RFC 9725) and WHEP playback over plain HTTP, so any WebRTC client can take part.

No trickle ICE: the 201 answer carries every candidate, so PATCH answers 405.
"""

from __future__ import annotations

from aiohttp import web

from .appkeys import AUTH, LIVE, SETTINGS
from .auth import bearer, check_unit_id
from .errors import UnsupportedMediaType
from .http_api import person_of, read_body

routes = web.RouteTableDef()

SDP_TYPE = "application/sdp"


async def read_sdp(request: web.Request) -> str:
    if request.content_type != SDP_TYPE:
        raise UnsupportedMediaType(f"Content-Type must be {SDP_TYPE}, got {request.content_type or 'none'!r}")
    raw = await read_body(request, request.app[SETTINGS].server.max_sdp_bytes, "SDP offer")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsupportedMediaType(f"SDP offer is not UTF-8: {exc}") from exc


def sdp_created(request: web.Request, location: str, answer: str) -> web.Response:
    """``201 Created`` with an SDP answer, its resource and the ICE servers (WHIP/WHEP and talk-back)."""
    headers = {"Location": location, "Access-Control-Expose-Headers": "Location, Link"}
    resp = web.Response(status=201, text=answer, content_type=SDP_TYPE, headers=headers)
    for server in request.app[LIVE].ice_servers:
        for url in server["urls"]:
            link = f'<{url}>; rel="ice-server"'
            if "username" in server:
                link += f'; username="{server["username"]}"; credential="{server["credential"]}"; credential-type="password"'
            resp.headers.add("Link", link)
    return resp


@routes.post("/whip/{unit_id}")
async def whip_publish(request: web.Request) -> web.Response:
    unit_id = check_unit_id(request.match_info["unit_id"])
    await request.app[AUTH].unit(unit_id, bearer(request.headers.get("Authorization")))
    offer = await read_sdp(request)
    session_id, answer = await request.app[LIVE].publish(unit_id, offer, via="whip")
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
    person = await person_of(request, "live.watch")
    offer = await read_sdp(request)
    session_id, answer = await request.app[LIVE].watch(unit_id, offer, person)
    return sdp_created(request, f"/whep/{unit_id}/{session_id}", answer)


@routes.delete("/whep/{unit_id}/{session_id}")
async def whep_delete(request: web.Request) -> web.Response:
    person = await person_of(request, "live.watch")
    await request.app[LIVE].unwatch(request.match_info["unit_id"], request.match_info["session_id"], person)
    return web.Response(status=200)


async def _no_trickle(request: web.Request) -> web.Response:
    return web.json_response(
        {"error": {"code": "trickle_not_supported", "message": "trickle ICE is not supported: the answer has all candidates"}},
        status=405,
        headers={"Allow": "DELETE"},
    )


routes.route("PATCH", "/whip/{unit_id}/{session_id}")(_no_trickle)
routes.route("PATCH", "/whep/{unit_id}/{session_id}")(_no_trickle)

"""SDP offers and answers over HTTP (WHIP, WHEP and talk-back share them)."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import LIVE, SETTINGS
from ..errors import UnsupportedMediaType
from .request import read_body

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
                link += (f'; username="{server["username"]}"; credential="{server["credential"]}"'
                         '; credential-type="password"')
            resp.headers.add("Link", link)
    return resp

"""HTTP API of the dispatch audit trail (who did what to which action, instruction, alert, talk)."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import AUDIT
from .request import int_param, person_of

routes = web.RouteTableDef()


@routes.get("/api/audit")
async def audit(request: web.Request) -> web.Response:
    await person_of(request, "audit.read")
    entries = await request.app[AUDIT].entries(request.query.get("subject"), int_param(request, "limit", 500, 1, 5000))
    return web.json_response({"entries": entries})

"""HTTP API of the dispatch audit trail (who did what to which action, instruction, alert, talk):
from the evidence ledger (:mod:`dispatch_server.audit_ledger`) when the archive is enabled."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import AUDIT, AUDIT_LEDGER
from .request import int_param, person_of

routes = web.RouteTableDef()


@routes.get("/api/audit")
async def audit(request: web.Request) -> web.Response:
    await person_of(request, "audit.read")
    subject, limit = request.query.get("subject"), int_param(request, "limit", 500, 1, 5000)
    shipped = request.app.get(AUDIT_LEDGER)
    if shipped is not None:
        entries = await shipped.entries(subject, limit)
    else:
        entries = await request.app[AUDIT].entries(subject, limit)
    return web.json_response({"entries": entries})

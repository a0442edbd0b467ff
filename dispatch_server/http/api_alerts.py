"""HTTP API of alerts: list and acknowledge them; SOS from a unit that has only HTTP (the field page)."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import ALERTS, AUTH, SOS
from ..auth import bearer, check_unit_id
from ..sio.messages import parse_sos
from .request import person_of, read_json

routes = web.RouteTableDef()


@routes.get("/api/alerts")
async def list_alerts(request: web.Request) -> web.Response:
    await person_of(request, "dispatch.read")
    return web.json_response({"alerts": await request.app[ALERTS].list(request.query.get("state"))})


@routes.post("/api/alerts/{id}/ack")
async def ack_alert(request: web.Request) -> web.Response:
    person = await person_of(request, "alerts.ack")
    return web.json_response(await request.app[ALERTS].ack(request.match_info["id"], person))


@routes.post("/api/units/{unit_id}/sos")
async def unit_sos(request: web.Request) -> web.Response:
    """SOS authenticated with the unit's token."""
    unit_id = check_unit_id(request.match_info["unit_id"])
    await request.app[AUTH].unit(unit_id, bearer(request.headers.get("Authorization")))
    call = parse_sos(await read_json(request) if request.can_read_body else None)
    alert = await request.app[SOS].raise_sos(unit_id, call)
    return web.json_response(alert, status=201)

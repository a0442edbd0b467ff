"""HTTP API of dispatch: enforcement actions, instructions, alerts, SOS, talk-back, audit trail."""

from __future__ import annotations

from aiohttp import web

from .appkeys import ACTIONS, ALERTS, AUDIT, AUTH, INSTRUCTIONS, ROSTER, TALK
from .auth import bearer, check_unit_id
from .errors import BadRequest
from .http_api import person_of, read_json
from .sos import raise_sos
from .whip import sdp_created, read_sdp

routes = web.RouteTableDef()


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name}={raw!r} is not an integer", code="bad_query") from None
    if not lo <= value <= hi:
        raise BadRequest(f"query parameter {name}={value} is outside {lo}..{hi}", code="bad_query")
    return value


# actions ---------------------------------------------------------------------------------
@routes.get("/api/actions")
async def list_actions(request: web.Request) -> web.Response:
    await person_of(request, "dispatch.read")
    state = request.query.get("state")
    return web.json_response({"actions": [a.view() for a in await request.app[ACTIONS].list(state)]})


@routes.post("/api/actions")
async def create_action(request: web.Request) -> web.Response:
    person = await person_of(request, "dispatch.write")
    action = await request.app[ACTIONS].create(await read_json(request), person)
    return web.json_response(action.view(), status=201)


@routes.get("/api/actions/{id}")
async def get_action(request: web.Request) -> web.Response:
    await person_of(request, "dispatch.read")
    return web.json_response((await request.app[ACTIONS].get(request.match_info["id"])).view())


@routes.patch("/api/actions/{id}")
async def update_action(request: web.Request) -> web.Response:
    person = await person_of(request, "dispatch.write")
    action = await request.app[ACTIONS].update(request.match_info["id"], await read_json(request), person)
    return web.json_response(action.view())


@routes.post("/api/actions/{id}/start")
async def start_action(request: web.Request) -> web.Response:
    person = await person_of(request, "dispatch.write")
    return web.json_response((await request.app[ACTIONS].start(request.match_info["id"], person)).view())


@routes.post("/api/actions/{id}/end")
async def end_action(request: web.Request) -> web.Response:
    person = await person_of(request, "dispatch.write")
    return web.json_response((await request.app[ACTIONS].end(request.match_info["id"], person)).view())


# instructions ----------------------------------------------------------------------------
@routes.post("/api/instructions")
async def create_instruction(request: web.Request) -> web.Response:
    person = await person_of(request, "dispatch.write")
    created = await request.app[INSTRUCTIONS].create(await read_json(request), person)
    return web.json_response(
        {"id": created[0].id, "ids": [i.id for i in created], "units": [i.unit_id for i in created],
         "state": "queued"},
        status=201,
    )


@routes.get("/api/instructions")
async def list_instructions(request: web.Request) -> web.Response:
    await person_of(request, "dispatch.read")
    found = await request.app[INSTRUCTIONS].list(
        unit=request.query.get("unit"), action=request.query.get("action"), state=request.query.get("state"),
        limit=_int_param(request, "limit", 200, 1, 1000),
    )
    return web.json_response({"instructions": [i.view() for i in found]})


@routes.get("/api/instructions/{id}")
async def get_instruction(request: web.Request) -> web.Response:
    await person_of(request, "dispatch.read")
    return web.json_response((await request.app[INSTRUCTIONS].get(request.match_info["id"])).view())


# alerts ----------------------------------------------------------------------------------
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
    """SOS from a unit that has only HTTP (the field page): authenticated with the unit token."""
    unit_id = check_unit_id(request.match_info["unit_id"])
    await request.app[AUTH].unit(unit_id, bearer(request.headers.get("Authorization")))
    body = await read_json(request) if request.can_read_body else {}
    alert = await raise_sos(request.app[ALERTS], request.app[ACTIONS], request.app[ROSTER], unit_id, body)
    return web.json_response(alert, status=201)


# talk-back -------------------------------------------------------------------------------
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


# audit -----------------------------------------------------------------------------------
@routes.get("/api/audit")
async def audit(request: web.Request) -> web.Response:
    await person_of(request, "audit.read")
    entries = await request.app[AUDIT].entries(request.query.get("subject"), _int_param(request, "limit", 500, 1, 5000))
    return web.json_response({"entries": entries})

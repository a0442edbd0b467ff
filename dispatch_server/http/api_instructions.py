"""HTTP API of instructions: queue one for a unit, a team or every online unit; list and read them."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import INSTRUCTIONS, ROSTER
from .parse_instructions import parse_new_instruction
from .request import int_param, person_of, read_json

routes = web.RouteTableDef()


@routes.post("/api/instructions")
async def create_instruction(request: web.Request) -> web.Response:
    person = await person_of(request, "dispatch.write")
    req = parse_new_instruction(await read_json(request))
    created = await request.app[INSTRUCTIONS].create(req, person)
    # Which targets have an instruction link now (the rest get it when they come back online).
    online = set(await request.app[ROSTER].reachable_units(i.unit_id for i in created))
    return web.json_response(
        {"id": created[0].id, "ids": [i.id for i in created], "units": [i.unit_id for i in created],
         "online": [i.unit_id for i in created if i.unit_id in online], "state": "queued"},
        status=201,
    )


@routes.post("/api/instructions/{id}/cancel")
async def cancel_instruction(request: web.Request) -> web.Response:
    """Cancel a queued instruction (409 not_cancellable once the unit received it)."""
    person = await person_of(request, "dispatch.write")
    return web.json_response((await request.app[INSTRUCTIONS].cancel(request.match_info["id"], person)).view())


@routes.get("/api/instructions")
async def list_instructions(request: web.Request) -> web.Response:
    await person_of(request, "dispatch.read")
    found = await request.app[INSTRUCTIONS].list(
        unit=request.query.get("unit"), action=request.query.get("action"), state=request.query.get("state"),
        limit=int_param(request, "limit", 200, 1, 1000),
    )
    return web.json_response({"instructions": [i.view() for i in found]})


@routes.get("/api/instructions/{id}")
async def get_instruction(request: web.Request) -> web.Response:
    await person_of(request, "dispatch.read")
    return web.json_response((await request.app[INSTRUCTIONS].get(request.match_info["id"])).view())

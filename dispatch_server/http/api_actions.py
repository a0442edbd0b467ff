"""HTTP API of enforcement actions: plan, edit, start and end them."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import ACTIONS, COMPLIANCE
from .parse_actions import parse_action_fields
from .request import person_of, read_json

routes = web.RouteTableDef()


@routes.get("/api/actions")
async def list_actions(request: web.Request) -> web.Response:
    await person_of(request, "dispatch.read")
    state = request.query.get("state")
    return web.json_response({"actions": [a.view() for a in await request.app[ACTIONS].list(state)]})


@routes.post("/api/actions")
async def create_action(request: web.Request) -> web.Response:
    person = await person_of(request, "dispatch.write")
    fields = parse_action_fields(await read_json(request), partial=False)
    action = await request.app[ACTIONS].create(fields, person)
    return web.json_response(action.view(), status=201)


@routes.get("/api/actions/{id}")
async def get_action(request: web.Request) -> web.Response:
    await person_of(request, "dispatch.read")
    return web.json_response((await request.app[ACTIONS].get(request.match_info["id"])).view())


@routes.patch("/api/actions/{id}")
async def update_action(request: web.Request) -> web.Response:
    person = await person_of(request, "dispatch.write")
    fields = parse_action_fields(await read_json(request), partial=True)
    action = await request.app[ACTIONS].update(request.match_info["id"], fields, person)
    return web.json_response(action.view())


@routes.post("/api/actions/{id}/start")
async def start_action(request: web.Request) -> web.Response:
    person = await person_of(request, "dispatch.write")
    return web.json_response((await request.app[ACTIONS].start(request.match_info["id"], person)).view())


@routes.post("/api/actions/{id}/end")
async def end_action(request: web.Request) -> web.Response:
    person = await person_of(request, "dispatch.write")
    return web.json_response((await request.app[ACTIONS].end(request.match_info["id"], person)).view())


@routes.get("/api/actions/{id}/procedure")
async def action_procedure(request: web.Request) -> web.Response:
    """流程预警: open and past rule breaks of the action, its notice and its rule."""
    await person_of(request, "dispatch.read")
    action = await request.app[ACTIONS].get(request.match_info["id"])
    return web.json_response(await request.app[COMPLIANCE].compliance(action))

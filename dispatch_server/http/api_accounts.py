"""HTTP API of administration: register units and issue, rotate or revoke their tokens
(``units.admin``: supervisors and admins); create people, reset passwords, change roles, disable
and enable (``accounts.admin``: admins). A token is in the answer once and never again (only its
hash is stored)."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import ACCOUNT_ADMIN
from .parse_accounts import parse_new_unit, parse_new_user, parse_password, parse_role
from .request import person_of, read_json

routes = web.RouteTableDef()


@routes.post("/api/units")
async def register_unit(request: web.Request) -> web.Response:
    person = await person_of(request, "units.admin")
    new = parse_new_unit(await read_json(request))
    unit, token = await request.app[ACCOUNT_ADMIN].register_unit(person, new.id, new.kind, new.name)
    return web.json_response({**unit, "token": token}, status=201)


@routes.post("/api/units/{unit_id}/rotate")
async def rotate_unit(request: web.Request) -> web.Response:
    person = await person_of(request, "units.admin")
    unit, token = await request.app[ACCOUNT_ADMIN].rotate_unit(person, request.match_info["unit_id"])
    return web.json_response({**unit, "token": token})


@routes.post("/api/units/{unit_id}/disable")
async def disable_unit(request: web.Request) -> web.Response:
    person = await person_of(request, "units.admin")
    return web.json_response(await request.app[ACCOUNT_ADMIN].set_unit_disabled(person, request.match_info["unit_id"],
                                                                                 True))


@routes.post("/api/units/{unit_id}/enable")
async def enable_unit(request: web.Request) -> web.Response:
    person = await person_of(request, "units.admin")
    return web.json_response(await request.app[ACCOUNT_ADMIN].set_unit_disabled(person, request.match_info["unit_id"],
                                                                                 False))


@routes.get("/api/users")
async def list_users(request: web.Request) -> web.Response:
    await person_of(request, "accounts.admin")
    return web.json_response({"users": await request.app[ACCOUNT_ADMIN].users()})


@routes.post("/api/users")
async def create_user(request: web.Request) -> web.Response:
    person = await person_of(request, "accounts.admin")
    new = parse_new_user(await read_json(request))
    return web.json_response(await request.app[ACCOUNT_ADMIN].create_user(person, new.username, new.role,
                                                                          new.password), status=201)


@routes.post("/api/users/{username}/password")
async def reset_password(request: web.Request) -> web.Response:
    person = await person_of(request, "accounts.admin")
    password = parse_password(await read_json(request))
    return web.json_response(await request.app[ACCOUNT_ADMIN].set_password(person, request.match_info["username"],
                                                                           password))


@routes.post("/api/users/{username}/role")
async def change_role(request: web.Request) -> web.Response:
    person = await person_of(request, "accounts.admin")
    role = parse_role(await read_json(request))
    return web.json_response(await request.app[ACCOUNT_ADMIN].set_role(person, request.match_info["username"], role))


@routes.post("/api/users/{username}/disable")
async def disable_user(request: web.Request) -> web.Response:
    person = await person_of(request, "accounts.admin")
    return web.json_response(await request.app[ACCOUNT_ADMIN].set_user_disabled(person, request.match_info["username"],
                                                                                True))


@routes.post("/api/users/{username}/enable")
async def enable_user(request: web.Request) -> web.Response:
    person = await person_of(request, "accounts.admin")
    return web.json_response(await request.app[ACCOUNT_ADMIN].set_user_disabled(person, request.match_info["username"],
                                                                                False))

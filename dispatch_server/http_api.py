"""JSON HTTP API: login/logout, who am I, the unit roster, console settings."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from aiohttp import web

from .appkeys import ARCHIVE, AUTH, LIVE, POSITIONS, ROSTER, SETTINGS, TELEMETRY
from .auth import Person, bearer
from .errors import BadRequest, TooLarge
from .messages import parse_login
from .roster import iso

routes = web.RouteTableDef()


async def read_body(request: web.Request, limit: int, what: str) -> bytes:
    """The whole request body, refusing (413) anything over ``limit`` bytes without buffering it."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"{what} of {request.content_length} bytes is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"{what} is over {limit} bytes")
        chunks.append(chunk)


async def read_json(request: web.Request) -> Any:
    raw = await read_body(request, request.app[SETTINGS].server.max_message_bytes, "request body")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code="bad_json") from exc


async def person_of(request: web.Request, permission: str) -> Person:
    """The logged-in person behind the request, checked for ``permission``."""
    person = await request.app[AUTH].person(bearer(request.headers.get("Authorization")))
    person.require(permission)
    return person


@routes.post("/api/login")
async def login(request: web.Request) -> web.Response:
    creds = parse_login(await read_json(request))
    token, person = await request.app[AUTH].login(creds.username, creds.password)
    return web.json_response(
        {"token": token, "username": person.username, "role": person.role, "expires_at": iso(person.expires_at)}
    )


@routes.post("/api/logout")
async def logout(request: web.Request) -> web.Response:
    person = await person_of(request, "session.self")
    await request.app[AUTH].logout(person)
    return web.Response(status=204)


@routes.get("/api/me")
async def me(request: web.Request) -> web.Response:
    person = await person_of(request, "session.self")
    return web.json_response({"username": person.username, "role": person.role, "expires_at": iso(person.expires_at)})


@routes.get("/api/units")
async def units(request: web.Request) -> web.Response:
    await person_of(request, "units.read")
    return web.json_response({"units": await request.app[ROSTER].units()})


@routes.get("/api/console-config")
async def console_config(request: web.Request) -> web.Response:
    await person_of(request, "session.self")
    settings = request.app[SETTINGS]
    geo = settings.geo
    return web.json_response({
        "patrol_interval_s": settings.console.patrol_interval_s,
        "ice_servers": request.app[LIVE].ice_servers,
        "map": {"tile_url": geo.tile_url, "tile_crs": geo.tile_crs, "center": list(geo.center), "zoom": geo.zoom,
                "stale_after_s": geo.stale_after_s},
    })


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    live = request.app[LIVE]
    body = {"ok": live.accepting, "node": live.node_id, "publishers": len(live.publishers), "viewers": len(live.viewers),
            "rejected_fixes": request.app[POSITIONS].rejected,
            "telemetry": dataclasses.asdict(request.app[TELEMETRY].stats)}
    archive = request.app.get(ARCHIVE)
    if archive is not None:
        status = archive.status()
        body["archive"] = {"disk_full": status["disk_full"], "free_bytes": status["free_bytes"],
                           "recording": len(status["recording"]), "ledger_size": status["ledger_size"]}
    return web.json_response(body)

"""HTTP API of sessions and the console: login/logout, who am I, the unit roster, console
settings, and the health check."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from utctime import iso_seconds

from ..appkeys import ARCHIVE, AUTH, GUARD_STATS, HANDSHAKES, LIVE, POSITIONS, ROSTER, SETTINGS, SIO_WIRE, TELEMETRY
from ..auth import permissions_of
from ..errors import BadRequest
from .request import client_ip, person_of, read_json

routes = web.RouteTableDef()


def _credential(body: dict[str, object], key: str, max_len: int) -> str:
    v = body.get(key)
    if not isinstance(v, str) or not v:
        raise BadRequest(f"login: field {key!r} must be a non-empty string", code="bad_message")
    if len(v) > max_len:
        raise BadRequest(f"login: field {key!r} is longer than {max_len} characters", code="bad_message")
    return v


@routes.post("/api/login")
async def login(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest(f"login: expected a JSON object, got {type(body).__name__}", code="bad_message")
    token, person = await request.app[AUTH].login(_credential(body, "username", 64),
                                                  _credential(body, "password", 1024), client_ip(request))
    return web.json_response(
        {"token": token, "username": person.username, "role": person.role,
         "expires_at": iso_seconds(person.expires_at), "permissions": permissions_of(person.role)}
    )


@routes.post("/api/logout")
async def logout(request: web.Request) -> web.Response:
    person = await person_of(request, "session.self")
    await request.app[AUTH].logout(person)
    return web.Response(status=204)


@routes.get("/api/me")
async def me(request: web.Request) -> web.Response:
    person = await person_of(request, "session.self")
    return web.json_response({"username": person.username, "role": person.role,
                              "expires_at": iso_seconds(person.expires_at),
                              "permissions": permissions_of(person.role)})


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
        "time_zone": settings.console.time_zone,
        "archive": {"enabled": settings.archive.enabled,
                    "retention": [{"category": r.category, "keep_days": r.keep_days}
                                  for r in settings.archive.retention]},
        "ice_servers": request.app[LIVE].ice_servers,
        "map": {"tile_url": geo.tile_url, "tile_crs": geo.tile_crs, "center": list(geo.center), "zoom": geo.zoom,
                "stale_after_s": geo.stale_after_s},
    })


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Public: only whether this node takes work (503 while it drains). Details: ``/api/health``."""
    ok = request.app[LIVE].accepting
    return web.json_response({"ok": ok}, status=200 if ok else 503)


@routes.get("/api/health")
async def health(request: web.Request) -> web.Response:
    """The node's figures, for administrators: sessions, rejected fixes, telemetry, the archive."""
    await person_of(request, "system.health")
    live, handshakes = request.app[LIVE], request.app[HANDSHAKES]
    body = {"ok": live.accepting, "node": live.node_id, "publishers": len(live.publishers),
            "viewers": len(live.viewers),
            "rejected_fixes": request.app[POSITIONS].rejected,
            "telemetry": dataclasses.asdict(request.app[TELEMETRY].stats),
            "connections": dataclasses.asdict(request.app[GUARD_STATS]),
            "handshakes": {"unattached": handshakes.unattached(), "closed": handshakes.closed,
                           "refused": handshakes.refused},
            "socketio_wire": dataclasses.asdict(request.app[SIO_WIRE].stats)}
    archive = request.app.get(ARCHIVE)
    if archive is not None:
        status = archive.status()
        body["archive"] = {"disk_full": status["disk_full"], "free_bytes": status["free_bytes"],
                           "recording": len(status["recording"]), "ledger_size": status["ledger_size"],
                           "integrity": status["integrity"]}
    return web.json_response(body)

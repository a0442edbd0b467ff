"""HTTP API of positions: a unit's track (GeoJSON or GPX) and the nearest units to a point."""

from __future__ import annotations

import asyncio
import math
import time

from aiohttp import web

from geo.fix import FixError, parse_time
from geo.gpx import track_geojson, track_gpx

from ..appkeys import ACCOUNTS, POSITIONS
from ..auth import check_unit_id
from ..errors import BadRequest, NotFound
from .request import person_of

routes = web.RouteTableDef()

DEFAULT_TRACK_S = 3600.0
MAX_TRACK_POINTS = 200_000


def _time(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return parse_time(raw)
    except FixError as exc:
        raise BadRequest(f"query parameter {name}: {exc}", code="bad_query") from None


def _float(request: web.Request, name: str, lo: float, hi: float) -> float:
    raw = request.query.get(name)
    try:
        value = float(raw) if raw is not None else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not lo <= value <= hi:
        raise BadRequest(f"query parameter {name} must be a number in {lo:g}..{hi:g}", code="bad_query")
    return value


@routes.get("/api/units/nearest")
async def nearest(request: web.Request) -> web.Response:
    await person_of(request, "dispatch.read")
    lat = _float(request, "lat", -90, 90)
    lon = _float(request, "lon", -180, 180)
    k = int(_float(request, "k", 1, 100)) if "k" in request.query else 5
    available = request.query.get("available", "false").lower() in ("1", "true", "yes")
    units = await request.app[POSITIONS].nearest(lat, lon, k, available)
    return web.json_response({"units": units})


@routes.get("/api/units/{unit_id}/track")
async def track(request: web.Request) -> web.StreamResponse:
    await person_of(request, "dispatch.read")
    unit_id = check_unit_id(request.match_info["unit_id"])
    accounts = request.app[ACCOUNTS]
    if await accounts.db.run(accounts.get_unit, unit_id) is None:
        raise NotFound(f"unknown unit {unit_id!r}", code="unknown_unit")
    now = time.time()
    until = _time(request, "to", now + 60)
    since = _time(request, "from", until - DEFAULT_TRACK_S)
    if since >= until:
        raise BadRequest("query parameter from must be before to", code="bad_query")
    tracks = request.app[POSITIONS].tracks
    points = await asyncio.to_thread(tracks.query, unit_id, since, until, MAX_TRACK_POINTS)
    fixes = [p.fix for p in points]
    if request.query.get("format") == "gpx":
        return web.Response(text=track_gpx(unit_id, fixes), content_type="application/gpx+xml")
    if request.query.get("format", "geojson") != "geojson":
        raise BadRequest("format must be geojson or gpx", code="bad_query")
    doc = track_geojson(unit_id, fixes)
    doc["properties"] = {
        "unit_id": unit_id, "from": since, "to": until, "count": len(fixes),
        "actions": sorted({p.action_id for p in points if p.action_id}),
        "case_numbers": sorted({p.case_number for p in points if p.case_number}),
    }
    return web.json_response(doc, content_type="application/geo+json")

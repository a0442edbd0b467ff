"""HTTP API of the evidence archive's recordings: search, detail with playback URLs, segments.

Every access is authorised and written to the ledger first (:mod:`.evidence_access`). A
``<video>`` element cannot send an ``Authorization`` header, so the detail hands out segment
URLs with a playback ticket (:mod:`.tickets`).

Segment files are found through the catalog (the ledger's ``path``), never through the URL: the
id and the number are checked against patterns, and the resolved file must lie inside the
archive's ``recordings/<id>/``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import re
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from aiohttp import web

from recordings.catalog import Near, Query, SegmentRow
from utctime import parse_iso

from ..appkeys import COMPLIANCE, POSITIONS, TICKETS
from ..auth import PERMISSIONS, check_unit_id
from ..casenumber import CaseNumberError, parse_case_number
from ..errors import BadRequest, Conflict, NotFound
from ..evidence_catalog import EvidenceCatalog
from .evidence_access import SealedFile, authorise, evidence_of, record_access
from .request import person_of
from .tickets import segment_scope

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

RECORDING_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
SEQ_RE = re.compile(r"^[0-9]{1,9}$")
TRACK_MARGIN_S = 30.0  # fixes this long before and after a recording, so the map has a position at 0
MAX_TRACK_POINTS = 50_000
CONTENT_TYPES = {".webm": "video/webm", ".mkv": "video/x-matroska"}


# parameters -------------------------------------------------------------------------------
def recording_id_of(request: web.Request) -> str:
    rid = request.match_info["id"]
    if not RECORDING_ID_RE.match(rid):
        raise BadRequest("recording id: letters, digits, '_' and '-' only, at most 128", code="bad_recording_id")
    return rid


def _seq(request: web.Request) -> int:
    raw = request.match_info["seq"]
    if not SEQ_RE.match(raw):
        raise BadRequest("segment number: 1 to 9 digits", code="bad_segment")
    return int(raw)


def case_param(raw: object, what: str) -> str:
    try:
        return str(parse_case_number(raw if isinstance(raw, str) else ""))
    except CaseNumberError as exc:
        raise BadRequest(f"{what}: {exc}", code="bad_case_number") from None


def text_param(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > 200 or "\x00" in raw:
        raise BadRequest(f"query parameter {name} is too long or holds a NUL", code="bad_query")
    return raw


def iso_time_param(request: web.Request, name: str) -> float | None:
    raw = text_param(request, name)
    if raw is None:
        return None
    text = re.sub(r" (\d{2}:?\d{2})$", r"+\1", raw)  # an unencoded "+08:00" in a query string arrives as " 08:00"
    try:
        return parse_iso(text)
    except ValueError as exc:
        if "time zone" in str(exc):
            raise BadRequest(f"query parameter {name}={raw!r} needs a time zone (Z or +08:00)",
                             code="bad_query") from None
        raise BadRequest(f"query parameter {name}={raw!r} is not an ISO 8601 time such as 2026-11-27T09:30:00Z",
                         code="bad_query") from None


def _near(request: web.Request) -> Near | None:
    raw = text_param(request, "near")
    within = text_param(request, "within_m")
    if raw is None:
        if within is not None:
            raise BadRequest("within_m needs near=lat,lon", code="bad_query")
        return None
    try:
        lat, lon = (float(v) for v in raw.split(","))
        metres = float(within) if within is not None else 200.0
    except ValueError:
        raise BadRequest("near must be lat,lon in degrees and within_m a number of metres", code="bad_query") from None
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise BadRequest("near: lat must be in -90..90 and lon in -180..180", code="bad_query")
    if not (math.isfinite(metres) and 1 <= metres <= 50_000):
        raise BadRequest("within_m must be 1..50000", code="bad_query")
    return Near(lat, lon, metres)


def _query(request: web.Request) -> Query:
    case = text_param(request, "case")
    unit = text_param(request, "unit")
    since, until = iso_time_param(request, "from"), iso_time_param(request, "to")
    if since is not None and until is not None and since >= until:
        raise BadRequest("query parameter from must be before to", code="bad_query")
    limit = text_param(request, "limit") or "200"
    if not re.fullmatch(r"[0-9]{1,4}", limit) or not 1 <= int(limit) <= 1000:
        raise BadRequest("limit must be 1..1000", code="bad_query")
    return Query(case_number=case_param(case, "case") if case else None, action_id=text_param(request, "action"),
                 unit_id=check_unit_id(unit) if unit else None, officer=text_param(request, "officer"),
                 since=since, until=until, near=_near(request), limit=int(limit))


TrackPoints = Callable[[str, float, float | None], list[tuple[float, float, float]]]  # (t, lat, lon)


def _tracks(request: web.Request, margin_s: float) -> TrackPoints:
    tracks = request.app[POSITIONS].tracks

    def points(unit_id: str, since: float, until: float | None) -> list[tuple[float, float, float]]:
        found = tracks.query(unit_id, since - margin_s, None if until is None else until + margin_s, MAX_TRACK_POINTS)
        return [(p.fix.ts, p.fix.lat, p.fix.lon) for p in found]

    return points


# search and detail ------------------------------------------------------------------------
@routes.get("/api/recordings")
async def search(request: web.Request) -> web.Response:
    await person_of(request, "evidence.view")
    query = _query(request)
    evidence = await evidence_of(request)
    found = await asyncio.to_thread(evidence.catalog.search, query, _tracks(request, 0.0))
    return web.json_response({"recordings": found})


@routes.get("/api/recordings/{id}")
async def detail(request: web.Request) -> web.Response:
    rid = recording_id_of(request)
    evidence = await evidence_of(request)
    rec = await asyncio.to_thread(evidence.catalog.recording, rid)
    person = await authorise(request, evidence, "evidence.view", "viewed", {"recording_id": rid},
                              record_anonymous=rec is not None)
    if rec is None:
        raise NotFound(f"unknown recording {rid!r}", code="unknown_recording")
    await record_access(evidence, request, "viewed", f"user:{person.username}", "ok", {"recording_id": rid})
    can_download = person.role in PERMISSIONS["evidence.download"]
    for seg in rec["segments"]:
        url = None
        if not seg["deleted"]:
            url = (f"/api/recordings/{quote(rid)}/segments/{seg['seq']}"
                   f"?ticket={request.app[TICKETS].ticket(person, segment_scope(rid, seg['seq']))}")
        seg["url"] = url
        seg["download_url"] = f"{url}&download=1" if url and can_download else None
    opened, closed = rec.pop("opened_ts"), rec.pop("closed_ts")
    track: list[dict[str, Any]] = []
    if rec["unit_id"]:
        end = closed if closed is not None else opened + rec["duration_s"]
        points = await asyncio.to_thread(_tracks(request, TRACK_MARGIN_S), rec["unit_id"], opened, end)
        track = [{"t": round(ts - opened, 3), "lat": lat, "lon": lon} for ts, lat, lon in points]
    rec["track"] = track
    end = closed if closed is not None else opened + rec["duration_s"]
    rec["markers"] = await request.app[COMPLIANCE].markers(rec.get("action_id"), opened, end)
    return web.json_response(rec)


# segments -----------------------------------------------------------------------------------
def _segment_path(evidence: EvidenceCatalog, seg: SegmentRow) -> Path | None:
    base = (evidence.archive.root / "recordings" / seg.recording_id).resolve()
    path = (evidence.archive.root / seg.path).resolve()
    if path.parent != base or path.suffix not in CONTENT_TYPES:
        logger.error("recording %s segment %d: ledger path %r is outside %s", seg.recording_id, seg.seq, seg.path, base)
        return None
    return path


@routes.get("/api/recordings/{id}/segments/{seq}")
async def segment(request: web.Request) -> web.StreamResponse:
    rid, seq = recording_id_of(request), _seq(request)
    download = request.query.get("download", "0")
    if download not in ("0", "1"):
        raise BadRequest("download must be 0 or 1", code="bad_query")
    kind = "downloaded" if download == "1" else "played"
    range_header = request.headers.get("Range")
    data: dict[str, Any] = {"recording_id": rid, "seq": seq, "range": range_header[:100] if range_header else None}
    evidence = await evidence_of(request)
    seg = await asyncio.to_thread(evidence.catalog.segment, rid, seq)
    permission = "evidence.download" if kind == "downloaded" else "evidence.view"
    person = await authorise(request, evidence, permission, kind, data, ticket_scope=segment_scope(rid, seq),
                              record_anonymous=seg is not None)
    actor = f"user:{person.username}"
    if seg is None:
        raise NotFound(f"recording {rid!r} has no segment {seq}", code="unknown_segment")
    if seg.deleted:
        raise NotFound(f"segment {seq} of {rid} was deleted by retention", code="segment_deleted")
    if seg.elsewhere is not None:  # a catalog every node shares: the file is on that node's disk
        await record_access(evidence, request, kind, actor, "failed",
                            {**data, "status": 409, "reason": f"on node {seg.elsewhere}"})
        raise Conflict(f"segment {seq} of {rid} is in the archive of node {seg.elsewhere!r}; play it there",
                       code="segment_elsewhere")
    path = _segment_path(evidence, seg)
    if path is None or not await asyncio.to_thread(path.is_file):
        await record_access(evidence, request, kind, actor, "failed", {**data, "status": 404, "reason": "file missing"})
        raise NotFound(f"segment {seq} of {rid} is missing from the archive", code="segment_missing")
    await record_access(evidence, request, kind, actor, "ok", data)
    headers = {"Content-Type": CONTENT_TYPES[path.suffix], "Cache-Control": "private, no-store",
               "Repr-Digest": f"sha-256=:{base64.b64encode(bytes.fromhex(seg.sha256)).decode()}:"}
    if kind == "downloaded":
        headers["Content-Disposition"] = f'attachment; filename="{rid}-{path.name}"'
    return SealedFile(path, headers=headers)

"""HTTP API of the evidence archive: search, playback and download, legal holds, retention runs.

Every access to evidence is authorised per request and written to the ledger before anything is
served: ``viewed`` (a recording's detail), ``played`` (a segment streamed), ``downloaded``
(``?download=1``), each with the person, the client address, the recording, the segment, the
byte range and the outcome; refusals (403, and 401 for an existing segment) are written with
outcome ``denied``. If the ledger cannot take the entry, nothing is served (503).

A ``<video>`` element cannot send an ``Authorization`` header, so the detail hands out segment
URLs with a *ticket*: an HMAC (key made at start, in memory) over the session's token hash, the
recording, the segment and an expiry ``TICKET_TTL_S`` ahead. Each request with a ticket still
looks the session up and checks the role, so logging out or a role change takes effect at once.

Segment files are found through the catalog (the ledger's ``path``), never through the URL: the
id and the number are checked against patterns, and the resolved file must lie inside the
archive's ``recordings/<id>/``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable
from urllib.parse import quote

from aiohttp import web

from recordings.archive import ArchiveService
from recordings.catalog import Catalog, Near, Query, SegmentRow
from recordings.ledger import LedgerError
from recordings.retention import Policy, Retention

from .appkeys import ALERTS, AUTH, CATALOG, POSITIONS, SETTINGS
from .auth import PERMISSIONS, Person, bearer, check_unit_id
from .casenumber import CaseNumberError, parse_case_number
from .config import ArchiveConfig
from .errors import BadRequest, Conflict, DispatchError, NotFound, Unauthorized, Unavailable
from .http_api import person_of, read_json

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

RECORDING_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
SEQ_RE = re.compile(r"^[0-9]{1,9}$")
TICKET_TTL_S = 900
TICKET_PARTS = (re.compile(r"[0-9]{1,12}"), re.compile(r"[0-9a-f]{64}"), re.compile(r"[A-Za-z0-9_-]{24}"))
TRACK_MARGIN_S = 30.0  # fixes this long before and after a recording, so the map has a position at 0
MAX_TRACK_POINTS = 50_000
CONTENT_TYPES = {".webm": "video/webm", ".mkv": "video/x-matroska"}


def retention_policy(archive: ArchiveConfig) -> Policy:
    return Policy({r.category: r.keep_days for r in archive.retention}, archive.default_category,
                  archive.max_delete_share)


class EvidenceDesk:
    """This node's catalog kept in step with the archive's ledger, the playback tickets, and the
    lock under which holds and retention runs change what may be deleted."""

    def __init__(self, catalog: Catalog, archive: ArchiveService, policy: Policy, clock: Callable[[], float]) -> None:
        self.catalog = catalog
        self.archive = archive
        self.clock = clock
        self.retention = Retention(catalog, archive.ledger, archive.root, policy, clock)
        self.admin_lock = asyncio.Lock()
        self._ticket_key = secrets.token_bytes(32)
        self._sync_lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def sync(self) -> None:
        """Apply the ledger entries the catalog has not seen (cheap when there are none)."""
        if self.catalog.next_index == self.archive.ledger.size:
            return
        async with self._sync_lock:
            await asyncio.to_thread(self.catalog.sync_from, self.archive.ledger)

    def _on_archive(self, kind: str, detail: dict[str, Any]) -> None:
        if kind in ("sealed", "closed"):
            self._dirty.set()

    async def _follow(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.sync()
            except Exception:
                logger.exception("catalog sync failed")

    async def ctx(self, app: web.Application) -> AsyncIterator[None]:
        """After the archive has started (its ledger open and recovered): sync, then follow it."""
        await asyncio.to_thread(self.catalog.sync_from, self.archive.ledger)
        self.archive.listeners.append(self._on_archive)
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="catalog-sync")
        yield
        if self._on_archive in self.archive.listeners:
            self.archive.listeners.remove(self._on_archive)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.to_thread(self.catalog.close)

    # tickets --------------------------------------------------------------------------------
    def _mac(self, token_hash: str, recording_id: str, seq: int, expires: int) -> str:
        msg = f"{expires}.{token_hash}.{recording_id}.{seq}".encode()
        return base64.urlsafe_b64encode(hmac.new(self._ticket_key, msg, hashlib.sha256).digest()[:18]).decode()

    def ticket(self, person: Person, recording_id: str, seq: int) -> str:
        expires = int(self.clock()) + TICKET_TTL_S
        return f"{expires}.{person.token_hash}.{self._mac(person.token_hash, recording_id, seq, expires)}"

    def ticket_session(self, ticket: str, recording_id: str, seq: int) -> str:
        """The session token hash a valid ticket for this segment carries; 401 otherwise."""
        parts = ticket.split(".")
        if len(parts) != 3 or not TICKET_PARTS[0].fullmatch(parts[0]) or not TICKET_PARTS[1].fullmatch(parts[1]) \
                or not TICKET_PARTS[2].fullmatch(parts[2]):
            raise Unauthorized("malformed playback ticket", code="bad_ticket")
        expires, token_hash, mac = int(parts[0]), parts[1], parts[2]
        if not hmac.compare_digest(mac, self._mac(token_hash, recording_id, seq, expires)):
            raise Unauthorized("the playback ticket is not valid for this segment", code="bad_ticket")
        if expires < self.clock():
            raise Unauthorized("the playback ticket expired: reopen the recording", code="ticket_expired")
        return token_hash


_DESK = web.AppKey("evidence_desk", EvidenceDesk)


def wire(app: web.Application, archive: ArchiveService, policy: Policy, clock: Callable[[], float]) -> EvidenceDesk:
    """Put the catalog (``<data_dir>/catalog.sqlite3``) on the app and keep it synced; call after
    the cleanup contexts that start the archive, so the catalog starts after it and stops before."""
    catalog = Catalog(app[SETTINGS].data_dir / "catalog.sqlite3")
    desk = EvidenceDesk(catalog, archive, policy, clock)
    app[CATALOG] = catalog
    app[_DESK] = desk
    app.cleanup_ctx.append(desk.ctx)
    return desk


async def _desk(request: web.Request) -> EvidenceDesk:
    desk = request.app.get(_DESK)
    if desk is None:
        raise Unavailable("the evidence archive is disabled on this server (archive.enabled = false)",
                          code="archive_disabled")
    await desk.sync()
    return desk


def _where(request: web.Request) -> str:
    return f"http:{request.remote or 'unknown'}"


async def _ledger(desk: EvidenceDesk, request: web.Request, type: str, actor: str, outcome: str,
                  data: dict[str, Any]) -> None:
    """Write an access entry; if the ledger refuses, the access is refused too (503)."""
    try:
        await desk.archive.record(type, actor=actor, where=_where(request), outcome=outcome,
                                  data={**data, "client_ip": request.remote})
    except (LedgerError, OSError, ValueError) as exc:
        logger.error("evidence access not recorded (%s): %s", type, exc)
        raise Unavailable("the evidence ledger cannot record this access right now; nothing was served",
                          code="ledger_unavailable") from exc


async def _authorise(request: web.Request, desk: EvidenceDesk, permission: str, type: str,
                     data: dict[str, Any], ticket_for: tuple[str, int] | None = None,
                     record_anonymous: bool = True) -> Person:
    """The person behind the request, holding ``permission``; a refusal goes to the ledger first."""
    auth = request.app[AUTH]
    ticket = request.query.get("ticket") if ticket_for is not None else None
    try:
        if ticket is not None and ticket_for is not None:
            person = await auth.person_by_hash(desk.ticket_session(ticket, *ticket_for))
        else:
            person = await auth.person(bearer(request.headers.get("Authorization")))
    except Unauthorized as exc:
        if record_anonymous:
            await _ledger(desk, request, type, "anonymous", "denied", {**data, "status": 401, "reason": exc.message})
        raise
    try:
        person.require(permission)
    except DispatchError as exc:
        await _ledger(desk, request, type, f"user:{person.username}", "denied",
                      {**data, "status": exc.status, "reason": exc.message})
        raise
    return person


# parameters -------------------------------------------------------------------------------
def _recording_id(request: web.Request) -> str:
    rid = request.match_info["id"]
    if not RECORDING_ID_RE.match(rid):
        raise BadRequest("recording id: letters, digits, '_' and '-' only, at most 128", code="bad_recording_id")
    return rid


def _seq(request: web.Request) -> int:
    raw = request.match_info["seq"]
    if not SEQ_RE.match(raw):
        raise BadRequest("segment number: 1 to 9 digits", code="bad_segment")
    return int(raw)


def _case(raw: str, what: str) -> str:
    try:
        return str(parse_case_number(raw))
    except CaseNumberError as exc:
        raise BadRequest(f"{what}: {exc}", code="bad_case_number") from None


def _text(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > 200 or "\x00" in raw:
        raise BadRequest(f"query parameter {name} is too long or holds a NUL", code="bad_query")
    return raw


def _iso_time(request: web.Request, name: str) -> float | None:
    raw = _text(request, name)
    if raw is None:
        return None
    try:
        # An unencoded "+08:00" in a query string arrives as " 08:00".
        parsed = dt.datetime.fromisoformat(re.sub(r" (\d{2}:?\d{2})$", r"+\1", raw.replace("Z", "+00:00")))
    except ValueError:
        raise BadRequest(f"query parameter {name}={raw!r} is not an ISO 8601 time such as 2026-11-27T09:30:00Z",
                         code="bad_query") from None
    if parsed.tzinfo is None:
        raise BadRequest(f"query parameter {name}={raw!r} needs a time zone (Z or +08:00)", code="bad_query")
    return parsed.timestamp()


def _near(request: web.Request) -> Near | None:
    raw = _text(request, "near")
    within = _text(request, "within_m")
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
    case = _text(request, "case")
    unit = _text(request, "unit")
    since, until = _iso_time(request, "from"), _iso_time(request, "to")
    if since is not None and until is not None and since >= until:
        raise BadRequest("query parameter from must be before to", code="bad_query")
    limit = _text(request, "limit") or "200"
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise BadRequest("limit must be 1..1000", code="bad_query")
    return Query(case_number=_case(case, "case") if case else None, action_id=_text(request, "action"),
                 unit_id=check_unit_id(unit) if unit else None, officer=_text(request, "officer"),
                 since=since, until=until, near=_near(request), limit=int(limit))


def _tracks(request: web.Request, margin_s: float) -> Callable[[str, float, float | None], list[tuple[float, float, float]]]:
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
    desk = await _desk(request)
    found = await asyncio.to_thread(desk.catalog.search, query, _tracks(request, 0.0))
    return web.json_response({"recordings": found})


@routes.get("/api/recordings/{id}")
async def detail(request: web.Request) -> web.Response:
    rid = _recording_id(request)
    desk = await _desk(request)
    rec = await asyncio.to_thread(desk.catalog.recording, rid)
    person = await _authorise(request, desk, "evidence.view", "viewed", {"recording_id": rid},
                              record_anonymous=rec is not None)
    if rec is None:
        raise NotFound(f"unknown recording {rid!r}", code="unknown_recording")
    await _ledger(desk, request, "viewed", f"user:{person.username}", "ok", {"recording_id": rid})
    can_download = person.role in PERMISSIONS["evidence.download"]
    for seg in rec["segments"]:
        url = None
        if not seg["deleted"]:
            url = (f"/api/recordings/{quote(rid)}/segments/{seg['seq']}"
                   f"?ticket={desk.ticket(person, rid, seg['seq'])}")
        seg["url"] = url
        seg["download_url"] = f"{url}&download=1" if url and can_download else None
    opened, closed = rec.pop("opened_ts"), rec.pop("closed_ts")
    track: list[dict[str, Any]] = []
    if rec["unit_id"]:
        end = closed if closed is not None else opened + rec["duration_s"]
        points = await asyncio.to_thread(_tracks(request, TRACK_MARGIN_S), rec["unit_id"], opened, end)
        track = [{"t": round(ts - opened, 3), "lat": lat, "lon": lon} for ts, lat, lon in points]
    rec["track"] = track
    return web.json_response(rec)


# segments -----------------------------------------------------------------------------------
class _SegmentFile(web.FileResponse):
    """The sealed file itself: never a compressed sibling (``.gz``/``.br``) FileResponse would
    otherwise prefer for a client that accepts it."""

    def _get_file_path_stat_encoding(self, accept_encoding: str) -> Any:
        return super()._get_file_path_stat_encoding("")


def _segment_path(desk: EvidenceDesk, seg: SegmentRow) -> Path | None:
    base = (desk.archive.root / "recordings" / seg.recording_id).resolve()
    path = (desk.archive.root / seg.path).resolve()
    if path.parent != base or path.suffix not in CONTENT_TYPES:
        logger.error("recording %s segment %d: ledger path %r is outside %s", seg.recording_id, seg.seq, seg.path, base)
        return None
    return path


@routes.get("/api/recordings/{id}/segments/{seq}")
async def segment(request: web.Request) -> web.StreamResponse:
    rid, seq = _recording_id(request), _seq(request)
    download = request.query.get("download", "0")
    if download not in ("0", "1"):
        raise BadRequest("download must be 0 or 1", code="bad_query")
    kind = "downloaded" if download == "1" else "played"
    range_header = request.headers.get("Range")
    data: dict[str, Any] = {"recording_id": rid, "seq": seq, "range": range_header[:100] if range_header else None}
    desk = await _desk(request)
    seg = await asyncio.to_thread(desk.catalog.segment, rid, seq)
    permission = "evidence.download" if kind == "downloaded" else "evidence.view"
    person = await _authorise(request, desk, permission, kind, data, ticket_for=(rid, seq),
                              record_anonymous=seg is not None)
    actor = f"user:{person.username}"
    if seg is None:
        raise NotFound(f"recording {rid!r} has no segment {seq}", code="unknown_segment")
    if seg.deleted:
        raise NotFound(f"segment {seq} of {rid} was deleted by retention", code="segment_deleted")
    path = _segment_path(desk, seg)
    if path is None or not await asyncio.to_thread(path.is_file):
        await _ledger(desk, request, kind, actor, "failed", {**data, "status": 404, "reason": "file missing"})
        raise NotFound(f"segment {seq} of {rid} is missing from the archive", code="segment_missing")
    await _ledger(desk, request, kind, actor, "ok", data)
    headers = {"Content-Type": CONTENT_TYPES[path.suffix], "Cache-Control": "private, no-store",
               "Repr-Digest": f"sha-256=:{base64.b64encode(bytes.fromhex(seg.sha256)).decode()}:"}
    if kind == "downloaded":
        headers["Content-Disposition"] = f'attachment; filename="{rid}-{path.name}"'
    return _SegmentFile(path, headers=headers)


# legal holds --------------------------------------------------------------------------------
@routes.put("/api/recordings/{id}/category")
async def set_category(request: web.Request) -> web.Response:
    """Change a recording's retention category (ledger: retention_changed)."""
    person = await person_of(request, "evidence.hold")
    rid = _recording_id(request)
    body = await read_json(request)
    category = body.get("category") if isinstance(body, dict) else None
    reason = body.get("reason") if isinstance(body, dict) else None
    rules = {r.category for r in request.app[SETTINGS].archive.retention}
    if category not in rules:
        raise BadRequest(f"category must be one of {', '.join(sorted(rules))}", code="bad_category")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 2000:
        raise BadRequest("reason: 1-2000 characters saying why the retention changes", code="bad_reason")
    desk = await _desk(request)
    async with desk.admin_lock:
        rec = await asyncio.to_thread(desk.catalog.recording, rid)
        if rec is None:
            raise NotFound(f"unknown recording {rid!r}", code="unknown_recording")
        await _ledger(desk, request, "retention_changed", f"user:{person.username}", "ok",
                      {"recording_id": rid, "from": rec["category"], "to": category, "reason": reason.strip()})
        await desk.sync()
    return web.json_response(await asyncio.to_thread(desk.catalog.recording, rid))


@routes.get("/api/holds")
async def list_holds(request: web.Request) -> web.Response:
    await person_of(request, "evidence.view")
    desk = await _desk(request)
    return web.json_response({"holds": await asyncio.to_thread(desk.catalog.holds)})


@routes.post("/api/holds")
async def set_hold(request: web.Request) -> web.Response:
    person = await person_of(request, "evidence.hold")
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object {case_number, reason}", code="bad_hold")
    case = _case(body.get("case_number"), "case_number")
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 2000:
        raise BadRequest("reason: 1-2000 characters saying why the case's recordings must be kept", code="bad_hold")
    desk = await _desk(request)
    async with desk.admin_lock:
        if case in await asyncio.to_thread(desk.catalog.held_cases):
            raise Conflict(f"case {case} is already under a legal hold", code="already_held")
        await _ledger(desk, request, "hold_set", f"user:{person.username}", "ok",
                      {"case_number": case, "reason": reason.strip()})
        await desk.sync()
    hold = next(h for h in await asyncio.to_thread(desk.catalog.holds) if h["case_number"] == case)
    return web.json_response(hold, status=201)


@routes.delete("/api/holds/{case}")
async def release_hold(request: web.Request) -> web.Response:
    person = await person_of(request, "evidence.hold")
    case = _case(request.match_info["case"], "case number")
    reason = _text(request, "reason")
    desk = await _desk(request)
    async with desk.admin_lock:
        if case not in await asyncio.to_thread(desk.catalog.held_cases):
            raise NotFound(f"case {case} is not under a legal hold", code="not_held")
        await _ledger(desk, request, "hold_released", f"user:{person.username}", "ok",
                      {"case_number": case, "reason": reason})
        await desk.sync()
    return web.json_response({"case_number": case, "released_by": person.username})


# retention ----------------------------------------------------------------------------------
@routes.post("/api/retention/run")
async def retention_run(request: web.Request) -> web.Response:
    person = await person_of(request, "evidence.retention")
    dry = request.query.get("dry_run", "0")
    if dry not in ("0", "1", "true", "false"):
        raise BadRequest("dry_run must be 1 or 0", code="bad_query")
    dry_run = dry in ("1", "true")
    desk = await _desk(request)
    async with desk.admin_lock:
        result = await asyncio.to_thread(desk.retention.run, dry_run=dry_run, actor=f"user:{person.username}",
                                         where=_where(request))
    await desk.sync()
    if result.halted and not dry_run:
        message = halted_message(result.plan.figures())
        await request.app[ALERTS].raise_alert("retention_halted", "archive", message, actor=person.username)
        return web.json_response({"error": {"code": "retention_halted", "message": message}, **result.view()},
                                 status=409)
    return web.json_response(result.view())


def halted_message(f: dict[str, Any]) -> str:
    return (f"retention run halted: it would delete {f['segments']} of {f['total_segments']} segments "
            f"({f['share']:.0%}), more than archive.max_delete_share = {f['max_delete_share']:.0%}; nothing was deleted")


def run_retention_offline(archive_dir: Path, signing_key: Path, catalog_path: Path, policy: Policy, *,
                          dry_run: bool, where: str, clock: Callable[[], float] = time.time) -> Any:
    """``dispatch-server retention-run``: the same run on an archive no server has open."""
    from recordings.ledger import Ledger

    ledger = Ledger(archive_dir, signing_key, where=where, clock=clock)
    ledger.open()
    catalog = Catalog(catalog_path)
    try:
        return Retention(catalog, ledger, archive_dir, policy, clock).run(dry_run=dry_run, actor="system", where=where)
    finally:
        catalog.close()
        ledger.close()

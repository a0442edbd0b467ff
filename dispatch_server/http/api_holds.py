"""HTTP API of what the court keeps and for how long: legal holds (诉讼保全) on a case, a
recording's retention category, and retention runs (dry run first); and a tree head of the
ledger signed on demand (``dispatch-audit verify --fresh``)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from recordings.ledger import LedgerError

from ..appkeys import ALERTS, SETTINGS
from ..errors import BadRequest, Conflict, NotFound, Unavailable
from ..retention import halted_message, halted_params
from .api_recordings import case_param, recording_id_of, text_param
from .evidence_access import evidence_of, record_access, where
from .request import person_of, read_json

routes = web.RouteTableDef()


# legal holds --------------------------------------------------------------------------------
@routes.put("/api/recordings/{id}/category")
async def set_category(request: web.Request) -> web.Response:
    """Change a recording's retention category (ledger: retention_changed)."""
    person = await person_of(request, "evidence.hold")
    rid = recording_id_of(request)
    body = await read_json(request)
    category = body.get("category") if isinstance(body, dict) else None
    reason = body.get("reason") if isinstance(body, dict) else None
    rules = {r.category for r in request.app[SETTINGS].archive.retention}
    if not isinstance(category, str) or category not in rules:
        raise BadRequest(f"category must be one of {', '.join(sorted(rules))}", code="bad_category")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 2000:
        raise BadRequest("reason: 1-2000 characters saying why the retention changes", code="bad_reason")
    evidence = await evidence_of(request)
    async with evidence.admin_lock:
        rec = await asyncio.to_thread(evidence.catalog.recording, rid)
        if rec is None:
            raise NotFound(f"unknown recording {rid!r}", code="unknown_recording")
        await record_access(evidence, request, "retention_changed", f"user:{person.username}", "ok",
                      {"recording_id": rid, "from": rec["category"], "to": category, "reason": reason.strip()})
        await evidence.sync()
    return web.json_response(await asyncio.to_thread(evidence.catalog.recording, rid))


@routes.get("/api/holds")
async def list_holds(request: web.Request) -> web.Response:
    await person_of(request, "evidence.view")
    evidence = await evidence_of(request)
    return web.json_response({"holds": await asyncio.to_thread(evidence.catalog.holds)})


@routes.post("/api/holds")
async def set_hold(request: web.Request) -> web.Response:
    person = await person_of(request, "evidence.hold")
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object {case_number, reason}", code="bad_hold")
    case = case_param(body.get("case_number"), "case_number")
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 2000:
        raise BadRequest("reason: 1-2000 characters saying why the case's recordings must be kept", code="bad_hold")
    evidence = await evidence_of(request)
    async with evidence.admin_lock:
        if case in await asyncio.to_thread(evidence.catalog.held_cases):
            raise Conflict(f"case {case} is already under a legal hold", code="already_held")
        await record_access(evidence, request, "hold_set", f"user:{person.username}", "ok",
                      {"case_number": case, "reason": reason.strip()})
        await evidence.sync()
    hold = next(h for h in await asyncio.to_thread(evidence.catalog.holds) if h["case_number"] == case)
    return web.json_response(hold, status=201)


@routes.delete("/api/holds/{case}")
async def release_hold(request: web.Request) -> web.Response:
    person = await person_of(request, "evidence.hold")
    case = case_param(request.match_info["case"], "case number")
    reason = text_param(request, "reason")
    if reason is None or not reason.strip():
        raise BadRequest("reason: say why the hold is released (?reason=...); it goes into the evidence ledger",
                         code="bad_reason")
    evidence = await evidence_of(request)
    async with evidence.admin_lock:
        if case not in await asyncio.to_thread(evidence.catalog.held_cases):
            raise NotFound(f"case {case} is not under a legal hold", code="not_held")
        await record_access(evidence, request, "hold_released", f"user:{person.username}", "ok",
                      {"case_number": case, "reason": reason})
        await evidence.sync()
    return web.json_response({"case_number": case, "released_by": person.username})


# retention ----------------------------------------------------------------------------------
@routes.post("/api/retention/run")
async def retention_run(request: web.Request) -> web.Response:
    person = await person_of(request, "evidence.retention")
    dry = request.query.get("dry_run", "0")
    if dry not in ("0", "1", "true", "false"):
        raise BadRequest("dry_run must be 1 or 0", code="bad_query")
    dry_run = dry in ("1", "true")
    evidence = await evidence_of(request)
    async with evidence.admin_lock:
        result = await asyncio.to_thread(evidence.retention.run, dry_run=dry_run, actor=f"user:{person.username}",
                                         where=where(request))
    await evidence.sync()
    if result.halted and not dry_run:
        message = halted_message(result.plan.figures())
        await request.app[ALERTS].raise_alert("retention_halted", "archive", message, actor=person.username,
                                              params=halted_params(result.plan.figures()))
        return web.json_response({"error": {"code": "retention_halted", "message": message}, **result.view()},
                                 status=409)
    return web.json_response(result.view())


@routes.post("/api/archive/sign")
async def sign_now(request: web.Request) -> web.Response:
    """Sign a tree head over every entry now (admins): ``dispatch-audit verify --fresh`` then finds
    nothing pending. ``{"sth": the latest tree head}``; 503 while the ledger is refused."""
    await person_of(request, "evidence.sign")
    evidence = await evidence_of(request)
    try:
        sth = await evidence.archive.sign_now()
    except LedgerError as exc:
        raise Unavailable(f"no tree head signed: {exc}", code="ledger_unavailable") from exc
    return web.json_response({"sth": sth})

"""HTTP API of stills: a unit uploads a JPEG from its camera; operators list and view them.

The upload is authenticated with the unit's token and bounded by ``archive.max_snapshot_bytes``
(413 before the body is buffered); :class:`~dispatch_server.snapshots.SnapshotService` links it
to its case and has the archive seal it. Viewing is evidence access: authorised per request and
written to the ledger (``viewed``) before a byte is served (:mod:`.evidence_access`); an
``<img>`` may use the ticket in the list's ``image_url`` instead of an ``Authorization`` header.
The file served is the one the ledger names, never a path from the URL.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from recordings.snapshots import CONTENT_TYPE, SNAPSHOT_ID_RE, SNAPSHOT_PATH_RE, SNAPSHOTS_DIR
from recordings.still_catalog import StillQuery, StillRow

from ..appkeys import AUTH, SETTINGS, SNAPSHOTS, TICKETS
from ..auth import bearer, check_unit_id
from ..errors import BadRequest, Conflict, NotFound, Unavailable, UnsupportedMediaType
from ..evidence_catalog import EvidenceCatalog
from ..snapshots import NewSnapshot, snapshot_url
from .api_recordings import case_param, iso_time_param, text_param
from .evidence_access import SealedFile, authorise, evidence_of, record_access, where
from .request import int_param, person_of, read_body
from .tickets import snapshot_scope

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

INSTRUCTION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def _instruction_param(request: web.Request) -> str | None:
    raw = text_param(request, "instruction")
    if raw is not None and not INSTRUCTION_ID_RE.match(raw):
        raise BadRequest("query parameter instruction is not an instruction id", code="bad_query")
    return raw


@routes.post("/api/units/{unit_id}/snapshots")
async def upload(request: web.Request) -> web.Response:
    """A still from the unit's camera (unit token); 201 once it is sealed in the archive."""
    unit_id = check_unit_id(request.match_info["unit_id"])
    await request.app[AUTH].unit(unit_id, bearer(request.headers.get("Authorization")))
    service = request.app.get(SNAPSHOTS)
    if service is None:
        raise Unavailable("the evidence archive is disabled on this server (archive.enabled = false)",
                          code="archive_disabled")
    if request.content_type != CONTENT_TYPE:
        raise UnsupportedMediaType(f"a still is sent as Content-Type: {CONTENT_TYPE}, not {request.content_type!r}")
    instruction_id, taken_at = _instruction_param(request), iso_time_param(request, "taken_at")
    limit = request.app[SETTINGS].archive.max_snapshot_bytes
    jpeg = await read_body(request, limit, "the still")
    view = await service.store(NewSnapshot(unit_id, jpeg, instruction_id, taken_at, where(request)))
    return web.json_response(view, status=201, headers={"Location": view["url"]})


@routes.get("/api/snapshots")
async def search(request: web.Request) -> web.Response:
    """Stills from the catalog, newest first; each with an ``image_url`` an ``<img>`` can load."""
    person = await person_of(request, "evidence.view")
    unit, case = text_param(request, "unit"), text_param(request, "case")
    query = StillQuery(unit_id=check_unit_id(unit) if unit else None,
                       case_number=case_param(case, "case") if case else None,
                       action_id=text_param(request, "action"), limit=int_param(request, "limit", 200, 1, 1000))
    evidence = await evidence_of(request)
    found = await asyncio.to_thread(evidence.catalog.snapshots, query)
    tickets = request.app[TICKETS]
    for view in found:
        url = snapshot_url(view["snapshot_id"])
        view["url"] = url
        view["image_url"] = f"{url}?ticket={tickets.ticket(person, snapshot_scope(view['snapshot_id']))}"
    return web.json_response({"snapshots": found})


def _file_of(evidence: EvidenceCatalog, row: StillRow) -> Path | None:
    base = (evidence.archive.root / SNAPSHOTS_DIR).resolve()
    path = (evidence.archive.root / row.path).resolve()
    if not SNAPSHOT_PATH_RE.match(row.path) or not path.is_relative_to(base):
        logger.error("still %s: ledger path %r is not under %s", row.view["snapshot_id"], row.path, base)
        return None
    return path


@routes.get("/api/snapshots/{snapshot_id}")
async def image(request: web.Request) -> web.StreamResponse:
    """The sealed JPEG (Bearer token or a ticket); ledger: ``viewed``."""
    sid = request.match_info["snapshot_id"]
    if not SNAPSHOT_ID_RE.match(sid):
        raise BadRequest("snapshot id: snap-<YYYYMMDDTHHMMSSZ>-<8 hex digits>", code="bad_snapshot_id")
    range_header = request.headers.get("Range")
    data: dict[str, Any] = {"snapshot_id": sid, "range": range_header[:100] if range_header else None}
    evidence = await evidence_of(request)
    row = await asyncio.to_thread(evidence.catalog.snapshot, sid)
    person = await authorise(request, evidence, "evidence.view", "viewed", data, ticket_scope=snapshot_scope(sid),
                             record_anonymous=row is not None)
    actor = f"user:{person.username}"
    if row is None:
        raise NotFound(f"unknown still {sid!r}", code="unknown_snapshot")
    if row.elsewhere is not None:  # a catalog every node shares: the file is on that node's disk
        await record_access(evidence, request, "viewed", actor, "failed",
                            {**data, "status": 409, "reason": f"on node {row.elsewhere}"})
        raise Conflict(f"still {sid} is in the archive of node {row.elsewhere!r}; view it there",
                       code="snapshot_elsewhere")
    path = _file_of(evidence, row)
    if path is None or not await asyncio.to_thread(path.is_file):
        await record_access(evidence, request, "viewed", actor, "failed", {**data, "status": 404,
                                                                           "reason": "file missing"})
        raise NotFound(f"still {sid} is missing from the archive", code="snapshot_missing")
    await record_access(evidence, request, "viewed", actor, "ok", data)
    headers = {"Content-Type": CONTENT_TYPE, "Cache-Control": "private, no-store",
               "Repr-Digest": f"sha-256=:{base64.b64encode(bytes.fromhex(row.view['sha256'])).decode()}:"}
    return SealedFile(path, headers=headers)

"""HTTP API of the dispatch audit trail (who did what to which action, instruction, alert, talk,
unit or person): filters by person, unit, case, verb and time; JSON or CSV. Answered from the
evidence ledger (:mod:`dispatch_server.audit_ledger`) when the archive is enabled."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from zoneinfo import ZoneInfo

from aiohttp import web

from utctime import parse_iso

from ..appkeys import AUDIT, AUDIT_LEDGER, SETTINGS
from ..audit import AuditFilter
from ..errors import BadRequest
from .request import int_param, person_of

routes = web.RouteTableDef()

CSV_COLUMNS = ("n", "time", "utc", "actor", "verb", "subject", "detail")


def _text(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is None or not value.strip():
        return None
    if len(value) > 200:
        raise BadRequest(f"query parameter {name} is longer than 200 characters", code="bad_query")
    return value.strip()


def _time(request: web.Request, name: str) -> float | None:
    value = _text(request, name)
    if value is None:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        raise BadRequest(f"query parameter {name}={value!r} is not an ISO 8601 time", code="bad_query") from None


@routes.get("/api/audit")
async def audit(request: web.Request) -> web.Response:
    """``subject``, ``actor``, ``unit``, ``case``, ``action`` (a verb or its family), ``from``,
    ``to``, ``limit``; ``format=csv`` answers a CSV file (UTF-8 with BOM, times in the court's zone)."""
    await person_of(request, "audit.read")
    where = AuditFilter(subject=_text(request, "subject"), actor=_text(request, "actor"), unit=_text(request, "unit"),
                        case=_text(request, "case"), verb=_text(request, "action"), since=_time(request, "from"),
                        until=_time(request, "to"))
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise BadRequest("format must be json or csv", code="bad_query")
    limit = int_param(request, "limit", 500, 1, 50000)
    shipped = request.app.get(AUDIT_LEDGER)
    if shipped is not None:
        entries = await shipped.entries(where, limit)
    else:
        entries = await request.app[AUDIT].entries(limit=limit, where=where)
    if fmt == "json":
        return web.json_response({"entries": entries})
    zone = ZoneInfo(request.app[SETTINGS].console.time_zone)
    out = io.StringIO()
    out.write("\ufeff")  # spreadsheet programs read the file as UTF-8 (Chinese case numbers)
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        ts = e["ts"]
        local = datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S") if ts is not None else ""
        writer.writerow((e["n"], local, e["at"] or "", e["actor"], e["verb"], e["subject"],
                         json.dumps(e["detail"], ensure_ascii=False, sort_keys=True)))
    return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="audit.csv"'})

"""HTTP API of the statistics (汇总统计): the figures of a period by a grouping, as JSON, CSV or
XLSX, and the actions behind a figure. People with ``stats.read`` (supervisors, auditors, admins).

Query: ``period`` (day | week | month | custom; default month), ``date`` (YYYY-MM-DD in the
court's zone, default today) or ``from`` and ``to`` for custom, ``group`` (type | judge | officer
| unit | team; default type), ``format`` (json | csv | xlsx). A bad parameter is a 400 naming it.
"""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

from aiohttp import web

from ..appkeys import STATS
from ..errors import BadRequest
from ..statistics import Period, check_figure, check_group
from ..stats_tables import Table, tables
from .request import person_of

routes = web.RouteTableDef()

FORMATS = ("json", "csv", "xlsx")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _param(request: web.Request, name: str, default: str | None = None) -> str | None:
    value = request.query.get(name, default)
    if value is not None and len(value) > 200:
        raise BadRequest(f"query parameter {name} is longer than 200 characters", code="bad_query")
    return value


def _query(request: web.Request) -> tuple[Period, str]:
    period = request.app[STATS].period(_param(request, "period", "month") or "month", _param(request, "date"),
                                       _param(request, "from"), _param(request, "to"))
    return period, check_group(_param(request, "group", "type") or "type")


def to_csv(views: list[Table]) -> bytes:
    """Every table one after the other (its name, its header, its rows, a blank line); UTF-8 with a
    BOM so that Excel reads the Chinese."""
    out = io.StringIO()
    writer = csv.writer(out)
    for table in views:
        writer.writerow([table.name])
        writer.writerow(table.columns)
        writer.writerows([["" if v is None else v for v in row] for row in table.rows])
        writer.writerow([])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def to_xlsx(views: list[Table], title: str) -> bytes:
    """One sheet per table, header in the first row (blocking: run it in a thread)."""
    from openpyxl import Workbook  # imported here: only exports need it

    book = Workbook(write_only=True)
    for table in views:
        sheet = book.create_sheet(table.name)
        sheet.append(table.columns)
        for row in table.rows:
            sheet.append(row)
    book.properties.title = title
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _filename(stats: dict[str, Any], ext: str) -> str:
    p = stats["period"]
    return f"stats-{p['from']}-{p['to']}-{stats['group']}.{ext}"


@routes.get("/api/stats")
async def stats(request: web.Request) -> web.Response:
    await person_of(request, "stats.read")
    fmt = _param(request, "format", "json") or "json"
    if fmt not in FORMATS:
        raise BadRequest(f"format must be one of {', '.join(FORMATS)}, not {fmt[:40]!r}", code="bad_query")
    period, group = _query(request)
    figures = await request.app[STATS].compute(period, group)
    if fmt == "json":
        return web.json_response(figures)
    views = tables(figures)
    if fmt == "csv":
        body, kind = to_csv(views), "text/csv; charset=utf-8"
    else:
        title = f"{figures['court_name']} 汇总统计 {figures['period']['from']}—{figures['period']['to']}"
        body, kind = await asyncio.to_thread(to_xlsx, views, title), XLSX
    return web.Response(body=body, headers={
        "Content-Type": kind, "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="{_filename(figures, fmt)}"'})


@routes.get("/api/stats/actions")
async def actions_behind(request: web.Request) -> web.Response:
    """The actions behind ``figure`` (see dispatch_server.statistics.FIGURES) in the group ``key``
    (all groups when absent), with their coverage and the link to each one's report."""
    await person_of(request, "stats.read")
    period, group = _query(request)
    figure = _param(request, "figure")
    if not figure:
        raise BadRequest("figure is required", code="bad_figure")
    check_figure(figure)
    rows = await request.app[STATS].actions_behind(period, group, figure, _param(request, "key"))
    return web.json_response({"period": period.view(), "group": group, "figure": figure,
                              "key": request.query.get("key"), "actions": rows})

"""HTTP API of the per-action report (行动报告): ``GET /api/actions/{id}/report``.

The report lists the action's evidence with its hashes, so reading it is evidence access: with
the archive enabled, every read (and every refusal of a logged-in person) is written to the
evidence ledger as ``viewed`` with ``what`` ``report`` before the report is served
(:mod:`.evidence_access`). Permission ``reports.read`` (supervisors, auditors, admins).
"""

from __future__ import annotations

import re

from aiohttp import web

from ..appkeys import EVIDENCE, REPORTS
from ..errors import BadRequest
from .evidence_access import authorise, record_access
from .request import person_of

routes = web.RouteTableDef()

ACTION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@routes.get("/api/actions/{id}/report")
async def action_report(request: web.Request) -> web.Response:
    action_id = request.match_info["id"]
    if not ACTION_ID_RE.match(action_id):
        raise BadRequest("action id: letters, digits, '_' and '-' only, at most 64 (such as act-3f9c2a1b7d40)",
                         code="bad_action_id")
    reports = request.app[REPORTS]
    evidence = request.app.get(EVIDENCE)
    data = {"action_id": action_id, "what": "report"}
    if evidence is None:  # no archive: the report has no evidence to list, and there is no ledger
        await person_of(request, "reports.read")
        return web.json_response(await reports.report(action_id))
    person = await authorise(request, evidence, "reports.read", "viewed", data,
                             record_anonymous=await reports.exists(action_id))
    report = await reports.report(action_id)
    await record_access(evidence, request, "viewed", f"user:{person.username}", "ok", data)
    return web.json_response(report)

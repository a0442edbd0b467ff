"""Evidence access at the edge: every access to the archive is authorised per request and written
to the evidence ledger before anything is served.

``viewed`` (a recording's detail), ``played`` (a segment streamed), ``downloaded``
(``?download=1``), hold and retention changes: each entry names the person, the client address,
the recording or case, the byte range and the outcome; refusals (403, and 401 where the thing
asked for exists) are written with outcome ``denied``. If the ledger cannot take the entry,
nothing is served (503).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from recordings.ledger import LedgerError

from ..appkeys import AUTH, DENIALS, EVIDENCE, TICKETS
from ..auth import Person, bearer
from ..errors import DispatchError, Unauthorized, Unavailable
from ..evidence_catalog import EvidenceCatalog

logger = logging.getLogger(__name__)


class SealedFile(web.FileResponse):
    """A sealed evidence file itself: never a compressed sibling (``.gz``/``.br``) FileResponse
    would otherwise prefer for a client that accepts it."""

    def _get_file_path_stat_encoding(self, accept_encoding: str) -> Any:
        return super()._get_file_path_stat_encoding("")


async def evidence_of(request: web.Request) -> EvidenceCatalog:
    """The node's evidence catalog, caught up with the ledger; 503 when the archive is disabled."""
    evidence = request.app.get(EVIDENCE)
    if evidence is None:
        raise Unavailable("the evidence archive is disabled on this server (archive.enabled = false)",
                          code="archive_disabled")
    await evidence.sync()
    return evidence


def where(request: web.Request) -> str:
    return f"http:{request.remote or 'unknown'}"


async def record_access(evidence: EvidenceCatalog, request: web.Request, type: str, actor: str, outcome: str,
                        data: dict[str, Any]) -> None:
    """Write an access entry; if the ledger refuses, the access is refused too (503). Refusals of
    anonymous callers are summarised per source and minute (:mod:`dispatch_server.denials`)."""
    try:
        if actor == "anonymous" and outcome == "denied":
            await request.app[DENIALS].denied(where(request), {**data, "client_ip": request.remote}, type)
            return
        await evidence.archive.record(type, actor=actor, where=where(request), outcome=outcome,
                                      data={**data, "client_ip": request.remote})
    except (LedgerError, OSError, ValueError) as exc:
        logger.error("evidence access not recorded (%s): %s", type, exc)
        raise Unavailable("the evidence ledger cannot record this access right now; nothing was served",
                          code="ledger_unavailable") from exc


async def authorise(request: web.Request, evidence: EvidenceCatalog, permission: str, type: str,
                    data: dict[str, Any], ticket_scope: str | None = None,
                    record_anonymous: bool = True) -> Person:
    """The person behind the request, holding ``permission``; a refusal goes to the ledger first.
    With ``ticket_scope`` (:mod:`.tickets`), a ``?ticket=`` for that scope stands for the bearer token."""
    auth = request.app[AUTH]
    ticket = request.query.get("ticket") if ticket_scope is not None else None
    try:
        if ticket is not None and ticket_scope is not None:
            person = await auth.person_by_hash(request.app[TICKETS].session_of(ticket, ticket_scope))
        else:
            person = await auth.person(bearer(request.headers.get("Authorization")))
    except Unauthorized as exc:
        if record_anonymous:
            await record_access(evidence, request, type, "anonymous", "denied",
                                {**data, "status": 401, "reason": exc.message})
        raise
    try:
        person.require(permission)
    except DispatchError as exc:
        await record_access(evidence, request, type, f"user:{person.username}", "denied",
                            {**data, "status": exc.status, "reason": exc.message})
        raise
    return person

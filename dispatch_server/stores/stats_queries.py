"""What statistics (:mod:`dispatch_server.statistics`) read of the server's database, in one place.

Read-only queries over tables other modules own (:mod:`dispatch_server.stores.schema` names each
owner), bounded by the time indexes in :data:`dispatch_server.stores.schema.AFTER_COLUMNS`. Each
function blocks: callers run it through :meth:`Database.run`. Epoch seconds throughout.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from .database import Database


class InstructionRow(NamedTuple):
    action_id: str | None
    unit_id: str
    type: str
    state: str
    created_at: float
    delivered_at: float | None
    acknowledged_at: float | None


class AlertRow(NamedTuple):
    action_id: str | None
    unit_id: str
    kind: str
    state: str
    created_at: float
    acknowledged_at: float | None
    escalated: bool


class LinkRow(NamedTuple):
    request_id: str
    uses: int
    revoked: bool


def action_docs(db: Database) -> list[str]:
    """Every action's JSON document (:class:`dispatch_server.actions.Action`)."""
    return [r[0] for r in db.query("SELECT doc FROM actions")]


def instructions_between(db: Database, since: float, until: float) -> list[InstructionRow]:
    """Instructions queued in ``[since, until)``."""
    return [InstructionRow(*r) for r in db.query(
        "SELECT action_id, unit_id, type, state, created_at, delivered_at, acknowledged_at FROM instructions "
        "WHERE created_at >= ? AND created_at < ?", (since, until))]


def alerts_between(db: Database, since: float, until: float) -> list[AlertRow]:
    """Alerts raised in ``[since, until)``."""
    return [AlertRow(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6])) for r in db.query(
        "SELECT json_extract(doc, '$.action_id'), json_extract(doc, '$.unit_id'), json_extract(doc, '$.kind'), "
        "state, created_at, json_extract(doc, '$.acknowledged_at'), json_extract(doc, '$.escalated') "
        "FROM alerts WHERE created_at >= ? AND created_at < ?", (since, until))]


def requests_between(db: Database, since: float, until: float) -> list[dict[str, Any]]:
    """Footage requests received in ``[since, until)`` (their documents)."""
    return [json.loads(r[0]) for r in db.query(
        "SELECT doc FROM footage_requests WHERE created_at >= ? AND created_at < ?", (since, until))]


def links_of(db: Database, request_ids: list[str]) -> list[LinkRow]:
    """The download links issued for these requests."""
    out: list[LinkRow] = []
    for i in range(0, len(request_ids), 500):
        chunk = request_ids[i:i + 500]
        out += [LinkRow(r[0], int(r[1]), r[2] is not None) for r in db.query(
            f"SELECT request_id, uses, revoked_at FROM party_links WHERE request_id IN ({','.join('?' * len(chunk))})",
            tuple(chunk))]
    return out

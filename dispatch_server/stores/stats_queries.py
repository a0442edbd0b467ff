"""What statistics (:mod:`dispatch_server.statistics`) read of the server's database, besides the
day summaries of instructions and alerts (:mod:`dispatch_server.stores.stats_days`).

Read-only queries over tables other modules own (:mod:`dispatch_server.stores.schema` names each
owner), bounded by the time indexes in :data:`dispatch_server.stores.schema.AFTER_COLUMNS`. Each
function blocks: callers run it through :meth:`Database.run`. Epoch seconds throughout.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from .database import Database

POINTS = (50, 90, 99)  # the percentiles of latencies


class LinkRow(NamedTuple):
    request_id: str
    uses: int
    revoked: bool


def action_docs(db: Database) -> list[str]:
    """Every action's JSON document (:class:`dispatch_server.actions.Action`)."""
    return [r[0] for r in db.query("SELECT doc FROM actions")]


def actions_version(db: Database) -> tuple[Any, ...]:
    """Changes whenever an action is added or saved (every save stamps ``updated_at``)."""
    return tuple(db.query("SELECT COUNT(*), MAX(updated_at), TOTAL(updated_at) FROM actions")[0])


_AL_ACTION, _AL_UNIT = "json_extract(a.doc, '$.action_id')", "json_extract(a.doc, '$.unit_id')"
_AL_TIME = "a.created_at >= ? AND a.created_at < ?"


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


def instruction_actions(db: Database, since: float, until: float, state: str) -> list[tuple[str | None, str]]:
    """``(action_id, unit_id)`` of the instructions queued in ``[since, until)`` now in ``state``."""
    return [(r[0], r[1]) for r in db.query(
        "SELECT DISTINCT action_id, unit_id FROM instructions i WHERE i.created_at >= ? AND i.created_at < ? "
        "AND state = ?", (since, until, state))]


def alert_actions(db: Database, since: float, until: float, sos: bool) -> list[tuple[str | None, str]]:
    """``(action_id, unit_id)`` of the SOS (``sos``) or the still open alerts raised in ``[since, until)``."""
    cond = "json_extract(a.doc, '$.kind') = 'sos'" if sos else "a.state = 'open'"
    return [(r[0], r[1]) for r in db.query(
        f"SELECT DISTINCT {_AL_ACTION}, {_AL_UNIT} FROM alerts a WHERE {_AL_TIME} AND {cond}", (since, until))]

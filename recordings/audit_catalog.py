"""The operators' audit trail as the ledger holds it: its table in the catalog (:mod:`recordings.catalog`).

The server writes every row of its audit trail (who did what to which action, instruction,
alert, talk session, login) into the evidence ledger as an ``operator_action`` entry; this table
is their projection, so that ``/api/audit`` answers from what the ledger holds (checked at every
start and by ``dispatch-audit verify``) rather than from a database anyone with write access to
it could edit.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Mapping, Sequence

from utctime import parse_iso_millis

ENTRY_TYPE = "operator_action"
GAP_TYPE = "audit_gap"

SCHEMA = """
CREATE TABLE IF NOT EXISTS operator_actions (
    ledger_index INTEGER PRIMARY KEY, seq INTEGER NOT NULL, at REAL, actor TEXT, verb TEXT, subject TEXT,
    detail TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS operator_actions_subject ON operator_actions(subject, seq);
CREATE INDEX IF NOT EXISTS operator_actions_seq ON operator_actions(seq);
"""


def apply(conn: sqlite3.Connection, entry: Mapping[str, Any], index: int) -> None:
    """Index one ``operator_action`` entry (``KeyError``/``TypeError`` if it is malformed)."""
    d = entry["data"]
    try:
        at: float | None = parse_iso_millis(d.get("at"))
    except (TypeError, ValueError):
        at = None
    conn.execute("INSERT OR REPLACE INTO operator_actions(ledger_index, seq, at, actor, verb, subject, detail) "
                 "VALUES (?,?,?,?,?,?,?)",
                 (index, int(d["seq"]), at, str(entry["actor"]), str(d["verb"]), str(d["subject"]),
                  json.dumps(d.get("detail", {}), ensure_ascii=False)))


def plain_actor(actor: str) -> str:
    """The audit trail's own form of a ledger actor: ``user:<name>`` is the bare name."""
    return actor[5:] if actor.startswith("user:") else actor


def view(row: sqlite3.Row) -> dict[str, Any]:
    return {"n": row["seq"], "ts": row["at"], "actor": plain_actor(row["actor"]), "verb": row["verb"],
            "subject": row["subject"], "detail": json.loads(row["detail"]), "ledger_index": row["ledger_index"]}


def search_sql(where: Sequence[str], args: Sequence[Any], limit: int) -> tuple[str, tuple[Any, ...]]:
    clause = " WHERE " + " AND ".join(where) if where else ""
    return f"SELECT * FROM operator_actions{clause} ORDER BY seq DESC LIMIT ?", (*args, limit)

"""The stills' part of the catalog (:mod:`recordings.catalog`): their table, how a
``snapshot_sealed`` entry fills it, and the search over it.

Like every row of the catalog, a still's row is derived from its ledger entry alone; the file
it names is ``path`` (archive-relative), never a name taken from a request.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, Mapping

from utctime import iso_millis, parse_iso_millis

SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY, unit_id TEXT, action_id TEXT, case_number TEXT, instruction_id TEXT, path TEXT NOT NULL,
    sha256 TEXT, bytes INTEGER, content_type TEXT, taken_at REAL, received_at REAL, sealed_index INTEGER);
CREATE INDEX IF NOT EXISTS snapshots_unit ON snapshots(unit_id, received_at);
CREATE INDEX IF NOT EXISTS snapshots_case ON snapshots(case_number, received_at);
CREATE INDEX IF NOT EXISTS snapshots_action ON snapshots(action_id, received_at);
CREATE INDEX IF NOT EXISTS snapshots_received ON snapshots(received_at);
"""

_SELECT = ("SELECT s.*, EXISTS(SELECT 1 FROM holds h WHERE h.case_number=s.case_number) AS held "
           "FROM snapshots s")


@dataclass(frozen=True)
class StillQuery:
    """Search criteria for stills; every given one must hold."""

    unit_id: str | None = None
    case_number: str | None = None
    action_id: str | None = None
    limit: int = 200


@dataclass(frozen=True)
class StillRow:
    """A still as the catalog knows it: its view and the file the ledger names."""

    view: dict[str, Any]
    path: str  # archive-relative, from the ledger
    elsewhere: str | None = None  # the node whose archive holds the file, when it is not this one


def _time(text: Any) -> float | None:
    try:
        return parse_iso_millis(text)
    except (TypeError, ValueError):
        return None


def apply_sealed(conn: sqlite3.Connection, data: Mapping[str, Any], index: int) -> None:
    """Index one ``snapshot_sealed`` entry's ``data`` (``KeyError`` if it names no still)."""
    conn.execute(
        "INSERT OR REPLACE INTO snapshots(id, unit_id, action_id, case_number, instruction_id, path, sha256, bytes, "
        "content_type, taken_at, received_at, sealed_index) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (str(data["snapshot_id"]), data.get("unit_id"), data.get("action_id"), data.get("case_number"),
         data.get("instruction_id"), str(data["path"]), data.get("sha256"), data.get("bytes"),
         data.get("content_type"), _time(data.get("taken_at")), _time(data.get("received_at")), index))


def _view(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "snapshot_id": row["id"], "sha256": row["sha256"], "bytes": row["bytes"], "unit_id": row["unit_id"],
        "action_id": row["action_id"], "case_number": row["case_number"], "instruction_id": row["instruction_id"],
        "taken_at": iso_millis(row["taken_at"]) if row["taken_at"] is not None else None,
        "received_at": iso_millis(row["received_at"]) if row["received_at"] is not None else None,
        "content_type": row["content_type"], "held": bool(row["held"]),
    }


def search_sql(query: StillQuery) -> tuple[str, tuple[Any, ...]]:
    """The SQL (and its arguments) of a search, newest first."""
    where, args = [], []  # type: list[str], list[Any]
    for column, value in (("s.unit_id", query.unit_id), ("s.case_number", query.case_number),
                          ("s.action_id", query.action_id)):
        if value is not None:
            where.append(f"{column}=?")
            args.append(value)
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + \
        " ORDER BY s.received_at DESC, s.id DESC LIMIT ?"
    return sql, (*args, query.limit)


def one_sql(snapshot_id: str) -> tuple[str, tuple[Any, ...]]:
    return _SELECT + " WHERE s.id=?", (snapshot_id,)


def views(rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    return [_view(r) for r in rows]


def still_row(rows: list[sqlite3.Row]) -> StillRow | None:
    return StillRow(_view(rows[0]), rows[0]["path"]) if rows else None

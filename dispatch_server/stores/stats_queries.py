"""What statistics (:mod:`dispatch_server.statistics`) read of the server's database, in one place.

Read-only queries over tables other modules own (:mod:`dispatch_server.stores.schema` names each
owner), bounded by the time indexes in :data:`dispatch_server.stores.schema.AFTER_COLUMNS`. Each
function blocks: callers run it through :meth:`Database.run`. Epoch seconds throughout.

Instructions and alerts are counted in SQL, by group (:func:`counted`): :class:`Keying` says how an
item finds its groups; its ``(action_id, key)`` pairs go into the temporary table ``stats_keys``
of the database's connection, whose key the join uses. Percentiles are nearest-rank (the value at
position ``ceil(p * n / 100)`` of the sorted values), picked out by a window function, so that a
year of instructions never leaves SQLite.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

from .database import Database

POINTS = (50, 90, 99)
def keys_table(name: str) -> str:
    return (f"CREATE TEMP TABLE IF NOT EXISTS {name} (action_id TEXT NOT NULL, key TEXT NOT NULL, "
            "PRIMARY KEY (action_id, key)) WITHOUT ROWID")


@dataclass(frozen=True)
class Keying:
    """How an item finds its groups: through its action, by the temporary table ``table`` of
    ``(action_id, key)`` pairs (no action: the group ``""``); or its own unit (``by_unit``); or
    neither: one group ``"*"`` (the totals). ``pairs``, when given, replace the table's rows first
    (the table outlives the query: it is reloaded only when the actions changed)."""

    table: str | None = None
    pairs: tuple[tuple[str, str], ...] | None = None
    by_unit: bool = False

    def sql(self, action: str, unit: str) -> tuple[str, str]:
        """``(key expression, join)`` for an item whose action and unit are the SQL expressions
        ``action`` and ``unit``."""
        if self.by_unit:
            return f"COALESCE({unit}, '')", ""
        if self.table is None:
            return "'*'", ""
        return "COALESCE(k.key, '')", f"LEFT JOIN temp.{self.table} k ON k.action_id = {action}"

    def load(self, c: sqlite3.Connection) -> None:
        """Put ``pairs`` into ``table`` when there are any to put (blocking, under the caller's lock)."""
        if self.table is None or self.pairs is None or self.by_unit:
            return
        c.execute(keys_table(self.table))
        c.execute(f"DELETE FROM temp.{self.table}")
        c.executemany(f"INSERT OR IGNORE INTO temp.{self.table}(action_id, key) VALUES (?,?)", self.pairs)


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


def _percentiles(rows: list[tuple[Any, ...]], points: Sequence[int]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for g, n, rn, x in rows:
        d = out[g]
        d["n"] = n
        for p in points:
            if rn == -(-p * n // 100):
                d[f"p{p}"] = x
        if rn == n:
            d["max"] = x
    return dict(out)


def _ranked(key: str, value: str, source: str, where: str, points: Sequence[int]) -> str:
    picks = " OR ".join([f"rn = ({p} * n + 99) / 100" for p in points] + ["rn = n"])
    return (f"WITH v AS (SELECT {key} AS g, {value} AS x FROM {source} WHERE {where}), "
            "r AS (SELECT g, x, ROW_NUMBER() OVER (PARTITION BY g ORDER BY x) AS rn, "
            f"COUNT(*) OVER (PARTITION BY g) AS n FROM v) SELECT g, n, rn, x FROM r WHERE {picks}")


_INS_TIME = "i.created_at >= ? AND i.created_at < ?"
LATENCIES = {  # what is measured: (value, condition)
    "delivery": ("MAX(0, i.delivered_at - i.created_at)", "i.delivered_at IS NOT NULL"),
    "ack": ("MAX(0, i.acknowledged_at - i.delivered_at)",
            "i.delivered_at IS NOT NULL AND i.acknowledged_at IS NOT NULL"),
}


def instruction_counts(c: sqlite3.Connection, since: float, until: float,
                       keying: Keying) -> list[tuple[str, str, str, int]]:
    """Instructions queued in ``[since, until)``: ``(group, type, state, count)``."""
    key, join = keying.sql("i.action_id", "i.unit_id")
    return [(r[0], r[1], r[2], int(r[3])) for r in c.execute(
        f"SELECT {key}, i.type, i.state, COUNT(*) FROM instructions i {join} WHERE {_INS_TIME} GROUP BY 1, 2, 3",
        (since, until))]


def instruction_latencies(c: sqlite3.Connection, since: float, until: float, keying: Keying,
                          which: str) -> dict[str, dict[str, Any]]:
    """Percentiles (p50, p90, p99, max, n) of ``which`` (:data:`LATENCIES`) by group."""
    key, join = keying.sql("i.action_id", "i.unit_id")
    value, cond = LATENCIES[which]
    sql = _ranked(key, value, f"instructions i {join}", f"{_INS_TIME} AND {cond}", POINTS)
    return _percentiles(c.execute(sql, (since, until)).fetchall(), POINTS)


_AL_ACTION, _AL_UNIT = "json_extract(a.doc, '$.action_id')", "json_extract(a.doc, '$.unit_id')"
_AL_TIME = "a.created_at >= ? AND a.created_at < ?"


def alert_counts(c: sqlite3.Connection, since: float, until: float,
                 keying: Keying) -> list[tuple[str, str, int, int, int]]:
    """Alerts raised in ``[since, until)``: ``(group, kind, count, still open, escalated)``."""
    key, join = keying.sql(_AL_ACTION, _AL_UNIT)
    return [(r[0], r[1], int(r[2]), int(r[3]), int(r[4] or 0)) for r in c.execute(
        f"SELECT {key}, json_extract(a.doc, '$.kind'), COUNT(*), SUM(a.state = 'open'), "
        f"SUM(json_extract(a.doc, '$.escalated') = 1) FROM alerts a {join} WHERE {_AL_TIME} GROUP BY 1, 2",
        (since, until))]


def sos_ack_latencies(c: sqlite3.Connection, since: float, until: float,
                      keying: Keying) -> dict[str, dict[str, Any]]:
    """Percentiles (p50, p90, max, n) of SOS → acknowledged by group."""
    key, join = keying.sql(_AL_ACTION, _AL_UNIT)
    sql = _ranked(key, "MAX(0, json_extract(a.doc, '$.acknowledged_at') - a.created_at)",
                  f"alerts a {join}", f"{_AL_TIME} AND json_extract(a.doc, '$.kind') = 'sos' AND "
                  "json_extract(a.doc, '$.acknowledged_at') IS NOT NULL", (50, 90))
    return _percentiles(c.execute(sql, (since, until)).fetchall(), (50, 90))


class Counted(NamedTuple):
    """What :func:`counted` found, by group."""

    instructions: list[tuple[str, str, str, int]]  # (group, type, state, count)
    delivery: dict[str, dict[str, Any]]  # group -> percentiles
    ack: dict[str, dict[str, Any]]
    alerts: list[tuple[str, str, int, int, int]]  # (group, kind, count, still open, escalated)
    sos_ack: dict[str, dict[str, Any]]


def counted(since: float, until: float, keying: Keying, c: sqlite3.Connection) -> Counted:
    """Instructions and alerts of ``[since, until)`` counted by ``keying`` (run through
    :meth:`Database.read`: the temporary table and the queries in one piece)."""
    keying.load(c)
    return Counted(instruction_counts(c, since, until, keying),
                   instruction_latencies(c, since, until, keying, "delivery"),
                   instruction_latencies(c, since, until, keying, "ack"),
                   alert_counts(c, since, until, keying), sos_ack_latencies(c, since, until, keying))


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

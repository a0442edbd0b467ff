"""Summaries of whole days kept beside the rows they sum up, and redone when one of those rows changes.

Statistics over a year (:mod:`dispatch_server.statistics`) would otherwise read every instruction
and every segment of the year on every request: a million rows, 10-20 s. Instead a caller's
function sums up one **day** (a span ``[start, end)`` of epoch seconds: in practice the court's
midnight to the next) into a blob; the blob is stored with the **stamp** it was computed at and
used again until a row of that day changes.

Changes are noted by SQLite triggers (:func:`change_triggers`), so nothing that writes the rows
has to remember: every insert, update (of the columns that count) or delete marks the hour of the
row's time column in ``<prefix>_changes(hour, stamp)`` with a new stamp, one more than the largest.
A stored summary is current while no hour of its day carries a newer stamp than its own. A day
that has not ended yet is summed up on every request (it is small) and never stored. Several
processes may share the file: the stamps are in it, and a summary is only ever replaced by one
computed at a newer stamp.

Reads run in one read transaction (one snapshot): the stamp a summary is stored with is the one
its rows were read at, so a change that lands while it is computed makes it stale, never wrong.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from typing import Callable, Generic, Sequence, TypeVar

import psycopg

HOUR = 3600
BUSY = (sqlite3.OperationalError, psycopg.OperationalError)  # a store busy or read-only
T = TypeVar("T")


def schema(prefix: str) -> str:
    """The tables of a cache named ``prefix`` (``CREATE ... IF NOT EXISTS``)."""
    return f"""
CREATE TABLE IF NOT EXISTS {prefix}_changes (hour INTEGER PRIMARY KEY, stamp INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS {prefix}_changes_stamp ON {prefix}_changes(stamp);
CREATE TABLE IF NOT EXISTS {prefix}_days (
    start REAL NOT NULL, "end" REAL NOT NULL, stamp INTEGER NOT NULL, format INTEGER NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (start, "end"));
"""


def _mark(prefix: str, expr: str) -> str:
    # An update, then an insert where there was no row: no statement of a trigger may meet a
    # conflict, since the statement that fired it (an INSERT OR IGNORE, say) would decide how it
    # is resolved, and the mark could be dropped.
    hour = f"CAST(({expr}) / {HOUR} AS INTEGER)"
    stamp = f"(SELECT COALESCE(MAX(stamp), 0) + 1 FROM {prefix}_changes)"
    return (f"UPDATE {prefix}_changes SET stamp = {stamp} WHERE hour = {hour}; "
            f"INSERT INTO {prefix}_changes(hour, stamp) SELECT {hour}, {stamp} WHERE ({expr}) IS NOT NULL "
            f"AND NOT EXISTS (SELECT 1 FROM {prefix}_changes WHERE hour = {hour});")


def change_triggers(prefix: str, table: str, times: Sequence[str], columns: Sequence[str]) -> str:
    """Triggers that mark, on every insert and delete of a row of ``table`` and every update of
    one of ``columns``, the hours of the row's ``times`` (SQL expressions over the row, old and
    new)."""
    name = f"{prefix}_{table}"

    def marks(row: str) -> str:
        return " ".join(_mark(prefix, t.replace("ROW.", f"{row}.")) for t in times)

    return f"""
CREATE TRIGGER IF NOT EXISTS {name}_ins AFTER INSERT ON {table} BEGIN {marks("NEW")} END;
CREATE TRIGGER IF NOT EXISTS {name}_del AFTER DELETE ON {table} BEGIN {marks("OLD")} END;
CREATE TRIGGER IF NOT EXISTS {name}_upd AFTER UPDATE OF {", ".join(columns)} ON {table}
BEGIN {marks("OLD")} {marks("NEW")} END;
"""


def change_triggers_postgres(prefix: str, table: str, times: Sequence[str], columns: Sequence[str],
                             lock: int) -> str:
    """:func:`change_triggers` in PostgreSQL: one PL/pgSQL function marks an hour. It takes the
    advisory lock ``lock`` of the store's single writer first, so stamps are handed out one
    transaction at a time (a stamp committed later is always larger), as SQLite's writer lock does."""
    name = f"{prefix}_{table}"

    def marks(row: str) -> str:
        return " ".join(f"PERFORM {prefix}_mark({t.replace('ROW.', f'{row}.')});" for t in times)

    return f"""
CREATE OR REPLACE FUNCTION {prefix}_mark(t DOUBLE PRECISION) RETURNS VOID LANGUAGE plpgsql AS $f$
BEGIN
    IF t IS NULL THEN RETURN; END IF;
    PERFORM pg_advisory_xact_lock({lock});
    INSERT INTO {prefix}_changes(hour, stamp)
        VALUES (floor(t / {HOUR})::BIGINT, (SELECT COALESCE(MAX(stamp), 0) + 1 FROM {prefix}_changes))
        ON CONFLICT (hour) DO UPDATE SET stamp = EXCLUDED.stamp;
END $f$;
CREATE OR REPLACE FUNCTION {name}_marks() RETURNS TRIGGER LANGUAGE plpgsql AS $f$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN {marks("OLD")} END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN {marks("NEW")} END IF;
    RETURN NULL;
END $f$;
CREATE TRIGGER {name}_insdel AFTER INSERT OR DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION {name}_marks();
CREATE TRIGGER {name}_upd AFTER UPDATE OF {", ".join(columns)} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}_marks();
"""


def latest_stamp(conn: sqlite3.Connection, prefix: str) -> int:
    return int(conn.execute(f"SELECT COALESCE(MAX(stamp), 0) FROM {prefix}_changes").fetchone()[0])


def warm(conn: sqlite3.Connection, prefix: str, days: Sequence[tuple[float, float]], now: float,
         compute: "Summary", decoded: "Decoded[T]") -> int:
    """Compute and store the summaries of ``days`` that are not current and read them all into
    ``decoded`` (see :func:`summaries`); how many were computed. Blocking."""
    computed = [0]

    def counting(c: sqlite3.Connection, start: float, end: float) -> bytes:
        computed[0] += 1
        return compute(c, start, end)
    summaries(conn, prefix, days, now, Summary(compute.format, counting), decoded)
    return computed[0]


@dataclass(frozen=True)
class Summary:
    """How a day is summed up: ``fn(conn, start, end)`` (blocking, inside the caller's read
    transaction). ``format`` names the layout of what it returns: a kept summary of another
    format is made again."""

    format: int
    fn: Callable[[sqlite3.Connection, float, float], bytes]

    def __call__(self, conn: sqlite3.Connection, start: float, end: float) -> bytes:
        return self.fn(conn, start, end)


def summaries(conn: sqlite3.Connection, prefix: str, days: Sequence[tuple[float, float]], now: float,
              compute: Summary, decoded: "Decoded[T]") -> list[T]:
    """The summary of each of ``days`` (ascending, not overlapping), read back by ``decoded``: from
    what ``decoded`` holds or the store when current, else from ``compute(conn, start, end)``;
    those of days ended by ``now`` are stored. Blocking; the caller holds the connection, which must
    not be inside a transaction."""
    if not days:
        return []
    fresh: list[tuple[float, float, int, int, bytes]] = []
    out: list[T] = []
    conn.execute("BEGIN")
    try:
        stamp = latest_stamp(conn, prefix)
        first, last = int(days[0][0] // HOUR), int(days[-1][1] // HOUR)
        changed = dict(conn.execute(f"SELECT hour, stamp FROM {prefix}_changes WHERE hour BETWEEN ? AND ?",
                                    (first, last)).fetchall())
        stored = {(s, e): st for s, e, st in conn.execute(
            f'SELECT start, "end", stamp FROM {prefix}_days' f" WHERE start >= ? AND start < ? AND format = ?",
            (days[0][0], days[-1][1], compute.format))}
        for start, end in days:
            hours = range(int(start // HOUR), int(-(-end // HOUR)))
            newest = max((changed.get(h, 0) for h in hours), default=0)
            kept = stored.get((start, end))
            if kept is not None and kept >= newest:
                known = decoded.known(start, end, kept)
                if known is None:
                    body = conn.execute(f'SELECT body FROM {prefix}_days WHERE start = ? AND "end" = ?',
                                        (start, end)).fetchone()[0]
                    known = decoded.read(start, end, kept, body)
                out.append(known)
                continue
            body = compute(conn, start, end)
            if end <= now:
                fresh.append((start, end, stamp, compute.format, body))
                out.append(decoded.read(start, end, stamp, body))
            else:  # the running day: no stamp, not kept
                out.append(decoded.read(start, end, None, body))
    finally:
        conn.execute("COMMIT")
    if fresh:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BUSY:  # busy or read-only: the summaries are computed again next time
            return out
        try:
            conn.executemany(
                f'INSERT INTO {prefix}_days(start, "end", stamp, format, body) VALUES (?,?,?,?,?) '
                'ON CONFLICT(start, "end") DO UPDATE SET stamp = excluded.stamp, format = excluded.format, '
                f"body = excluded.body WHERE excluded.stamp > {prefix}_days.stamp "
                f"OR excluded.format != {prefix}_days.format", fresh)
            conn.execute("COMMIT")
        except BUSY:
            conn.execute("ROLLBACK")
    return out


class Decoded(Generic[T]):
    """Summaries read back (``parse(start, stamp, body)``), kept by day and stamp: a stored day's
    summary is fetched and read once until it changes (a stamp of a day means one summary; None,
    the running day's, is never kept). Holds the ``keep`` most recently used."""

    def __init__(self, parse: Callable[[float, int | None, bytes], T], keep: int = 1000) -> None:
        self._parse = parse
        self._keep = keep
        self._known: dict[tuple[float, float, int], T] = {}
        self._lock = threading.Lock()

    def known(self, start: float, end: float, stamp: int) -> T | None:
        with self._lock:
            found = self._known.pop((start, end, stamp), None)
            if found is not None:
                self._known[start, end, stamp] = found  # most recently used last
            return found

    def read(self, start: float, end: float, stamp: int | None, body: bytes) -> T:
        value = self._parse(start, stamp, body)
        if stamp is not None:
            with self._lock:
                self._known[start, end, stamp] = value
                while len(self._known) > self._keep:
                    del self._known[next(iter(self._known))]
        return value

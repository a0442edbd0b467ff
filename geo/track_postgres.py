"""Stored tracks in PostgreSQL: the :class:`geo.track.TrackStore` of a cluster (``[storage] url``).

Every node of a cluster points at the same database, so a unit's track is whole whichever node its
fixes went through, and a node that dies takes none of it along. The semantics are those of
:mod:`geo.track` (key ``(unit_id, ts)``, duplicates skipped and counted per batch in order, all or
none, half-open range queries); positions and times are ``DOUBLE PRECISION``, so a ``ts`` comes
back bit for bit as it was sent (``REAL`` is float4, which rounds an epoch time in seconds to
128 s: fixes would collide, and resends would no longer be recognised as duplicates).

Blocking (psycopg 3 and its pool): call the methods off the event loop, as with the SQLite store;
calls from several threads use the pool's connections side by side.

Tables: ``track_fixes`` and ``track_schema_version`` (one row: :data:`geo.track.SCHEMA_VERSION`),
next to the server's own tables when the database is shared. They are created when the store opens,
in a transaction holding the advisory lock :data:`SCHEMA_LOCK`, so nodes starting together create
them once; a newer version is refused (:class:`geo.track.TrackSchemaTooNew`).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
import psycopg_pool

from geo.fix import Fix
from geo.track import SCHEMA_VERSION, InsertResult, TrackPoint, TrackStoreClosed, check_limit, too_new
from sqlcompat import display

SCHEMA_LOCK = 0x74726B73  # pg_advisory_xact_lock key of the tracks' schema changes ("trks")

# The steps from each version to the next, each applied in the transaction that records it.
STEPS: dict[int, str] = {
    1: """CREATE TABLE track_fixes (
    unit_id     TEXT NOT NULL,
    ts          DOUBLE PRECISION NOT NULL,
    lat         DOUBLE PRECISION NOT NULL,
    lon         DOUBLE PRECISION NOT NULL,
    alt         DOUBLE PRECISION,
    accuracy    DOUBLE PRECISION,
    speed       DOUBLE PRECISION,
    heading     DOUBLE PRECISION,
    action_id   TEXT,
    case_number TEXT,
    PRIMARY KEY (unit_id, ts)
)""",
}
assert max(STEPS) == SCHEMA_VERSION, "every version has a step for PostgreSQL"

_COLUMNS = "unit_id, ts, lat, lon, alt, accuracy, speed, heading, action_id, case_number"
_INSERT_CHUNK = 1000  # rows per INSERT statement (10 parameters each; PostgreSQL allows 65,535)

Row = tuple[Any, ...]


@functools.lru_cache(maxsize=64)
def _insert_sql(rows: int) -> str:
    values = ",".join(["(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"] * rows)
    return (f"INSERT INTO track_fixes ({_COLUMNS}) VALUES {values}"
            " ON CONFLICT (unit_id, ts) DO NOTHING RETURNING unit_id, ts")


class PostgresTrackStore:
    """:class:`geo.track.TrackStore` in the PostgreSQL database at ``url`` (blocking).

    Opening connects (``ConnectionError`` after ``connect_timeout_s``) and brings the tables to
    :data:`geo.track.SCHEMA_VERSION`. ``pool_size`` connections at most: inserts come from one
    group-commit thread per node (:class:`geo.track_writer.TrackWriter`), queries from requests.
    """

    def __init__(self, url: str, *, pool_size: int = 2, connect_timeout_s: float = 30.0) -> None:
        self.where = display(url)
        self._lock = threading.Lock()
        self._closed = False
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = psycopg_pool.ConnectionPool(
            url, min_size=1, max_size=pool_size, kwargs={"autocommit": True}, open=False, name="tracks",
            timeout=connect_timeout_s)
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except psycopg_pool.PoolTimeout:
            self._pool.close()
            raise ConnectionError(f"PostgreSQL at {self.where}: no connection within {connect_timeout_s:.0f} s") \
                from None
        try:
            with self._pool.connection() as conn:
                self._upgrade(conn)
        except BaseException:
            self._pool.close()
            raise

    def _upgrade(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS track_schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM track_schema_version").fetchone()
            found = int(row[0]) if row is not None and row[0] is not None else 0
            if found > SCHEMA_VERSION:
                raise too_new(f"the database {self.where}", found)  # the transaction rolls back
            for target in range(found + 1, SCHEMA_VERSION + 1):
                conn.execute(STEPS[target])
            if found < SCHEMA_VERSION:
                conn.execute("DELETE FROM track_schema_version")
                conn.execute("INSERT INTO track_schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))

    def insert_many(self, points: Iterable[TrackPoint]) -> InsertResult:
        return self.insert_batches([points])[0]

    def insert_batches(self, batches: Sequence[Iterable[TrackPoint]]) -> list[InsertResult]:
        # A few statements per group, never one per row or per batch (see SqliteTrackStore: a
        # statement per row made commits slow on a busy event loop). The first copy of each key, in
        # batch order, is all that is sent; the INSERT returns the keys it stored, and each stored
        # key counts for the batch that first held it. Everything else is a duplicate, of a row
        # stored before or of an earlier copy in the group. Rows go in sorted by key, so two nodes
        # storing overlapping groups take the row locks in the same order and cannot deadlock.
        row_batches = [[_row(p) for p in points] for points in batches]  # a bad point fails here
        firsts: dict[tuple[str, float], Row] = {}
        for rows in row_batches:
            for row in rows:
                firsts.setdefault((row[0], row[1]), row)
        new = [firsts[key] for key in sorted(firsts)]
        stored: set[tuple[str, float]] = set()
        with self._connection() as conn, conn.transaction():
            for i in range(0, len(new), _INSERT_CHUNK):
                chunk = new[i:i + _INSERT_CHUNK]
                cur = conn.execute(_insert_sql(len(chunk)), [v for row in chunk for v in row])
                stored.update((unit_id, ts) for unit_id, ts in cur.fetchall())
        results = []
        for rows in row_batches:
            inserted = 0
            for row in rows:
                key = (row[0], row[1])
                if key in stored:
                    stored.discard(key)  # later copies are duplicates of this one
                    inserted += 1
            results.append(InsertResult(inserted, len(rows) - inserted))
        return results

    def query(
        self, unit_id: str, since: float | None = None, until: float | None = None, limit: int | None = None
    ) -> list[TrackPoint]:
        check_limit(limit)
        sql = f"SELECT {_COLUMNS} FROM track_fixes WHERE unit_id = %s"
        args: list[object] = [unit_id]
        if since is not None:
            sql += " AND ts >= %s"
            args.append(float(since))
        if until is not None:
            sql += " AND ts < %s"
            args.append(float(until))
        sql += " ORDER BY ts"
        if limit is not None:
            sql += " LIMIT %s"
            args.append(limit)
        with self._connection() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [
            TrackPoint(u, Fix(lat, lon, ts, alt, acc, speed, heading), action_id, case_number)
            for u, ts, lat, lon, alt, acc, speed, heading, action_id, case_number in rows
        ]

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pool.close()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        if self._closed:
            raise TrackStoreClosed(f"track store at {self.where} is closed")
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg_pool.PoolClosed as exc:  # closed while this call waited
            raise TrackStoreClosed(f"track store at {self.where} is closed") from exc


def _row(p: TrackPoint) -> Row:
    f = p.fix
    return (p.unit_id, float(f.ts), f.lat, f.lon, f.alt, f.accuracy, f.speed, f.heading, p.action_id, p.case_number)

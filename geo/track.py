"""Stored tracks: every accepted fix of every unit, tagged with the action and case it served.

A track point is keyed by ``(unit_id, ts)``: a unit cannot be in two places at one fix time, and
field links resend fixes after a reconnect, so a second point with the same key is a duplicate,
ignored and counted, never an error and never an overwrite (the first stored copy stands).

Units: ``ts`` in epoch seconds (float, the device's fix time as in :class:`geo.fix.Fix`);
positions in WGS-84 degrees; the rest as documented on ``Fix``.

Two implementations of :class:`TrackStore`, chosen at the composition root:

* :class:`SqliteTrackStore` -- durable, one SQLite file of its own in WAL mode. Its methods block
  on disk I/O (an insert of a few thousand points takes milliseconds, a commit may wait for
  fsync), so call them off the event loop, e.g. ``await asyncio.to_thread(store.insert_many,
  points)``, or through :class:`geo.track_writer.TrackWriter`, which puts the batches of many
  callers into one transaction. One connection is shared under a lock, so calls from several
  threads serialise.
* :class:`geo.track_postgres.PostgresTrackStore` -- durable, in the PostgreSQL database of a
  cluster (``[storage] url``), shared by every node. Blocking like the SQLite store.
* :class:`MemoryTrackStore` -- for tests and single-process demos; not persistent, unbounded.

Limits: range queries are half-open ``since <= ts < until`` (either bound may be None), ordered
by ``ts`` ascending, optionally capped by ``limit``. Float ``ts`` values are compared exactly, so
a resend must carry the same ``ts`` to be recognised as a duplicate (JSON round trips of a float
preserve it).

Schema versions: the durable stores record the version of their table (:data:`SCHEMA_VERSION`),
bring an older one up to it when they open, and refuse a newer one (:class:`TrackSchemaTooNew`):
a newer release made it, and this code cannot know what it changed. Version 1 is the ``fixes``
table as it was before versions existed, so a file of that time opens with every row.
"""

from __future__ import annotations

import bisect
import functools
import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from geo.fix import Fix

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackPoint:
    """One fix of one unit, with the action and case (if any) the unit was working on."""

    unit_id: str
    fix: Fix
    action_id: str | None = None
    case_number: str | None = None


@dataclass(frozen=True)
class InsertResult:
    """How many points of a batch were stored and how many were duplicates of stored ones."""

    inserted: int
    duplicates: int


class TrackStore(Protocol):
    """Where track points live. Implementations keep the semantics in the module docstring."""

    def insert_many(self, points: Iterable[TrackPoint]) -> InsertResult:
        """Store the points atomically (all or none on error); duplicates are skipped and counted."""
        ...

    def insert_batches(self, batches: Sequence[Iterable[TrackPoint]]) -> list[InsertResult]:
        """Store several batches in one transaction (all or none on error), in order, so a point
        repeated in a later batch counts as that batch's duplicate; one result per batch."""
        ...

    def query(
        self, unit_id: str, since: float | None = None, until: float | None = None, limit: int | None = None
    ) -> list[TrackPoint]:
        """The unit's points with ``since <= ts < until``, oldest first, at most ``limit``."""
        ...

    def close(self) -> None:
        """Release resources; idempotent. Other calls after close raise."""
        ...


class TrackStoreClosed(RuntimeError):
    """The store was used after close()."""


class TrackSchemaTooNew(RuntimeError):
    """The stored tracks have a schema version newer than :data:`SCHEMA_VERSION` (nothing was changed)."""


SCHEMA_VERSION = 1  # of the stored tracks, on either engine; a change of the table is a new version


def too_new(where: str, found: int) -> TrackSchemaTooNew:
    """The error for tracks at ``where`` (a file, a database) of schema version ``found``."""
    return TrackSchemaTooNew(
        f"the GPS tracks in {where} have schema version {found}, and this release knows versions up to "
        f"{SCHEMA_VERSION}: they were stored by a newer release. Run that release, or restore a backup taken "
        "for this one (nothing was changed)")


class MemoryTrackStore:
    """:class:`TrackStore` in process memory: a sorted ``ts`` list and a dict per unit."""

    def __init__(self) -> None:
        self._times: dict[str, list[float]] = {}
        self._points: dict[str, dict[float, TrackPoint]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def insert_many(self, points: Iterable[TrackPoint]) -> InsertResult:
        return self.insert_batches([points])[0]

    def insert_batches(self, batches: Sequence[Iterable[TrackPoint]]) -> list[InsertResult]:
        # Read every key before touching state, so a malformed point leaves the store unchanged.
        keyed = [[(p.unit_id, float(p.fix.ts), p) for p in points] for points in batches]
        results = []
        with self._lock:
            self._check_open()
            for batch in keyed:
                inserted = duplicates = 0
                for unit_id, ts, p in batch:
                    by_ts = self._points.setdefault(unit_id, {})
                    if ts in by_ts:
                        duplicates += 1
                        continue
                    by_ts[ts] = p
                    bisect.insort(self._times.setdefault(unit_id, []), ts)
                    inserted += 1
                results.append(InsertResult(inserted, duplicates))
        return results

    def query(
        self, unit_id: str, since: float | None = None, until: float | None = None, limit: int | None = None
    ) -> list[TrackPoint]:
        check_limit(limit)
        with self._lock:
            self._check_open()
            times = self._times.get(unit_id, [])
            lo = 0 if since is None else bisect.bisect_left(times, since)
            hi = len(times) if until is None else bisect.bisect_left(times, until)
            if limit is not None:
                hi = min(hi, lo + limit)
            by_ts = self._points[unit_id] if times else {}
            return [by_ts[t] for t in times[lo:hi]]

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise TrackStoreClosed("track store is closed")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS fixes (
    unit_id     TEXT NOT NULL,
    ts          REAL NOT NULL,
    lat         REAL NOT NULL,
    lon         REAL NOT NULL,
    alt         REAL,
    accuracy    REAL,
    speed       REAL,
    heading     REAL,
    action_id   TEXT,
    case_number TEXT,
    PRIMARY KEY (unit_id, ts)
) WITHOUT ROWID
"""
_COLUMNS = "unit_id, ts, lat, lon, alt, accuracy, speed, heading, action_id, case_number"
_INSERT_CHUNK = 500  # rows per INSERT statement (10 values each; SQLite allows 32,766 variables)
_LOOKUP_CHUNK = 2000  # keys per duplicate lookup (2 values each)


@functools.lru_cache(maxsize=64)
def _insert_sql(rows: int, ignore: bool) -> str:
    verb = "INSERT OR IGNORE" if ignore else "INSERT"
    return f"{verb} INTO fixes ({_COLUMNS}) VALUES " + ",".join(["(?,?,?,?,?,?,?,?,?,?)"] * rows)


@functools.lru_cache(maxsize=64)
def _lookup_sql(keys: int) -> str:
    """The stored keys among ``keys`` (unit, ts) pairs: one primary-key search each."""
    values = ",".join(["(?,?)"] * keys)
    return (f"SELECT f.unit_id, f.ts FROM (VALUES {values}) AS k"
            " JOIN fixes AS f ON f.unit_id = k.column1 AND f.ts = k.column2")


class SqliteTrackStore:
    """:class:`TrackStore` in its own SQLite file (WAL). Blocking: run its calls off the event loop.

    The file and its parent directory are created if missing. ``synchronous=NORMAL`` under WAL
    keeps the database consistent after a crash; the last transactions before a power loss may be
    lost, which fits position data that units resend anyway.

    Checkpoints (copying the WAL back into the database, the only step that waits for fsync)
    run on a thread of their own every ``checkpoint_interval_s``, not inside a commit as SQLite
    does by default. A track row is ~100 bytes, but rows of different units land on different
    pages: with thousands of units a commit dirties a page per row, and an automatic checkpoint
    in the commit path made acknowledgements wait ~0.5 s at 5,000 units (bench/geo.py). PASSIVE
    checkpoints never block the writer; if the WAL still grows past ``wal_limit_bytes`` (the
    checkpointer cannot keep up), a RESTART checkpoint waits for the writer once and starts the
    WAL over. :meth:`close` stops the thread and truncates the WAL.
    """

    def __init__(self, path: str | Path, *, checkpoint_interval_s: float = 1.0,
                 wal_limit_bytes: int = 64 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None
        )
        try:
            self._conn.execute("PRAGMA busy_timeout=5000")
            _upgrade(self._conn, self.path)  # before anything else changes the file
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it
            self._conn.execute("PRAGMA cache_size=-32768")  # 32 MiB: the pages of thousands of units' tracks
        except BaseException:
            self._conn.close()
            raise
        self._checkpoint_interval_s = checkpoint_interval_s
        self._wal_limit_bytes = wal_limit_bytes
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name=f"checkpoint {self.path.name}",
                                              daemon=True)
        self._checkpointer.start()
        self.checkpoint_errors = 0

    def _checkpoint_loop(self) -> None:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            wal = self.path.with_name(self.path.name + "-wal")
            while not self._stop.wait(self._checkpoint_interval_s):
                try:
                    big = wal.exists() and wal.stat().st_size > self._wal_limit_bytes
                    conn.execute(f"PRAGMA wal_checkpoint({'RESTART' if big else 'PASSIVE'})").fetchall()
                except (sqlite3.Error, OSError) as exc:  # e.g. disk full: the next round tries again
                    self.checkpoint_errors += 1
                    if self.checkpoint_errors in (1, 10, 100) or self.checkpoint_errors % 1000 == 0:
                        logger.warning("track store %s: checkpoint failed (%d so far): %s", self.path,
                                       self.checkpoint_errors, exc)
        finally:
            conn.close()

    def insert_many(self, points: Iterable[TrackPoint]) -> InsertResult:
        return self.insert_batches([points])[0]

    def insert_batches(self, batches: Sequence[Iterable[TrackPoint]]) -> list[InsertResult]:
        # The transaction, not the row, is what costs: one commit appends to the WAL and takes the
        # write lock; a row is a few microseconds. Callers with many small batches group them here.
        #
        # A group is a handful of statements, not one per row: this runs on a worker thread while
        # the event loop holds the GIL most of the time, and the sqlite3 module gives the GIL up
        # around every statement step. Getting it back can take a whole switch interval (5 ms),
        # so a statement per row made a 250-row commit last up to a second under load (measured
        # in bench/geo.py). The rows go in with multi-row INSERT OR IGNOREs; when every row was
        # new (all but resends after a reconnect) that is all. Otherwise the group is rolled back
        # to its savepoint and stored again knowing which keys were there, so that duplicates
        # are counted against the batch that sent them.
        row_batches = [
            [(p.unit_id, float(p.fix.ts), p.fix.lat, p.fix.lon, p.fix.alt, p.fix.accuracy, p.fix.speed,
              p.fix.heading, p.action_id, p.case_number) for p in points]
            for points in batches
        ]
        rows = [row for batch in row_batches for row in batch]
        with self._lock:
            conn = self._open_conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("SAVEPOINT fast")
                before = conn.total_changes
                self._insert(conn, rows, ignore=True)
                if conn.total_changes - before == len(rows):
                    conn.execute("RELEASE fast")
                    results = [InsertResult(len(batch), 0) for batch in row_batches]
                else:
                    conn.execute("ROLLBACK TO fast")
                    conn.execute("RELEASE fast")
                    results = self._insert_counting(conn, row_batches)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return results

    @staticmethod
    def _insert(conn: sqlite3.Connection, rows: Sequence[tuple[object, ...]], *, ignore: bool) -> None:
        for i in range(0, len(rows), _INSERT_CHUNK):
            chunk = rows[i:i + _INSERT_CHUNK]
            conn.execute(_insert_sql(len(chunk), ignore), [v for row in chunk for v in row])

    def _insert_counting(
        self, conn: sqlite3.Connection, row_batches: Sequence[Sequence[tuple[object, ...]]]
    ) -> list[InsertResult]:
        """Store the rows whose key is new, in order; each batch's count of new and duplicate rows."""
        keys = list(dict.fromkeys((row[0], row[1]) for rows in row_batches for row in rows))
        seen: set[tuple[object, ...]] = set()
        for i in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[i:i + _LOOKUP_CHUNK]
            seen.update(conn.execute(_lookup_sql(len(chunk)), [v for key in chunk for v in key]))
        new_rows: list[tuple[object, ...]] = []
        results = []
        for rows in row_batches:
            inserted = 0
            for row in rows:
                key = (row[0], row[1])
                if key not in seen:
                    seen.add(key)
                    new_rows.append(row)
                    inserted += 1
            results.append(InsertResult(inserted, len(rows) - inserted))
        self._insert(conn, new_rows, ignore=False)
        return results

    def units(self) -> list[str]:
        """Every unit with a stored point (moving the tracks to another store)."""
        with self._lock:
            return [r[0] for r in self._open_conn().execute("SELECT DISTINCT unit_id FROM fixes ORDER BY unit_id")]

    def query(
        self, unit_id: str, since: float | None = None, until: float | None = None, limit: int | None = None
    ) -> list[TrackPoint]:
        check_limit(limit)
        sql = f"SELECT {_COLUMNS} FROM fixes WHERE unit_id = ?"
        args: list[object] = [unit_id]
        if since is not None:
            sql += " AND ts >= ?"
            args.append(since)
        if until is not None:
            sql += " AND ts < ?"
            args.append(until)
        sql += " ORDER BY ts"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            rows = self._open_conn().execute(sql, args).fetchall()
        return [
            TrackPoint(u, Fix(lat, lon, ts, alt, acc, speed, heading), action_id, case_number)
            for u, ts, lat, lon, alt, acc, speed, heading, action_id, case_number in rows
        ]

    def close(self) -> None:
        self._stop.set()
        if self._checkpointer.is_alive() and threading.current_thread() is not self._checkpointer:
            self._checkpointer.join()
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error as exc:
                    logger.warning("track store %s: final checkpoint failed: %s", self.path, exc)
                self._conn.close()
                self._conn = None

    def _open_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise TrackStoreClosed(f"track store {self.path} is closed")
        return self._conn


def _upgrade(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the file (``PRAGMA user_version``) to :data:`SCHEMA_VERSION` in one transaction that
    excludes other processes opening it; version 0 is a new file or one made before versions."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if found > SCHEMA_VERSION:
            raise too_new(str(path), found)
        existing = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'fixes'").fetchone() is not None
        if found < 1:
            conn.execute(_SCHEMA)
        if found < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if existing and found < SCHEMA_VERSION:  # (a new file goes straight to the version: not worth a line)
        logger.info("track store %s: schema version %d → %d", path, found, SCHEMA_VERSION)


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")

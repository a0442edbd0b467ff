"""TrackStore contract, run against the in-memory, the SQLite and the PostgreSQL implementation
(a real server, tests/support/postgres_server.py); then what is particular to the SQLite file."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from geo.fix import Fix
from geo.track import (
    SCHEMA_VERSION,
    InsertResult,
    MemoryTrackStore,
    SqliteTrackStore,
    TrackPoint,
    TrackSchemaTooNew,
    TrackStore,
    TrackStoreClosed,
)
from geo.track_postgres import PostgresTrackStore

T0 = 1_790_000_000.0
NOT_A_POINT = cast(TrackPoint, "not a point")  # what a caller with a bug might pass


def point(
    unit: str, ts: float, lat: float = 52.0, action: str | None = "act-1", case: str | None = "K 12/26"
) -> TrackPoint:
    return TrackPoint(unit, Fix(lat, 21.0, ts, alt=110.5, accuracy=4.0, speed=1.5, heading=270.0), action, case)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TrackStore]:
    s: TrackStore
    if request.param == "memory":
        s = MemoryTrackStore()
    elif request.param == "sqlite":
        s = SqliteTrackStore(tmp_path / "tracks.db")
    else:
        s = PostgresTrackStore(request.getfixturevalue("postgres_url"))
    yield s
    s.close()


def test_inserted_points_come_back_in_time_order(store: TrackStore) -> None:
    pts = [point("u1", T0 + t) for t in (5, 1, 3, 2, 4)]
    assert store.insert_many(pts) == InsertResult(5, 0)
    got = store.query("u1")
    assert [p.fix.ts for p in got] == [T0 + t for t in (1, 2, 3, 4, 5)]
    assert got[0] == point("u1", T0 + 1)


def test_all_fields_survive_including_missing_ones(store: TrackStore) -> None:
    bare = TrackPoint("u1", Fix(-33.5, 151.25, T0))
    store.insert_many([bare, point("u1", T0 + 1, action=None, case=None)])
    got = store.query("u1")
    assert got == [bare, point("u1", T0 + 1, action=None, case=None)]


def test_fix_times_and_positions_come_back_bit_for_bit(store: TrackStore) -> None:
    # Epoch seconds with microseconds need float64: a float32 column would round them to ~100 s.
    exact = [TrackPoint("u1", Fix(38.041234567891, 114.512345678912, T0 + k / 7, alt=0.1 + k)) for k in range(5)]
    assert store.insert_many(exact) == InsertResult(5, 0)
    assert store.query("u1") == exact
    assert store.insert_many(exact[2:]) == InsertResult(0, 3)  # a resend is recognised
    assert store.query("u1", since=exact[1].fix.ts, until=exact[3].fix.ts) == exact[1:3]


def test_duplicates_are_ignored_and_counted(store: TrackStore) -> None:
    assert store.insert_many([point("u1", T0), point("u1", T0 + 1)]) == InsertResult(2, 0)
    # Same unit and ts again (even with other contents), within a batch and across batches.
    again = [point("u1", T0, lat=10.0), point("u1", T0 + 2), point("u1", T0 + 2, lat=11.0), point("u2", T0)]
    assert store.insert_many(again) == InsertResult(2, 2)
    got = store.query("u1")
    assert [p.fix.ts for p in got] == [T0, T0 + 1, T0 + 2]
    assert got[0].fix.lat == 52.0  # the first stored copy stands
    assert len(store.query("u2")) == 1


def test_batches_share_one_transaction_and_are_counted_each(store: TrackStore) -> None:
    # In order: a point repeated in a later batch is that batch's duplicate.
    results = store.insert_batches([[point("u1", T0), point("u1", T0 + 1)], [point("u2", T0)],
                                    [point("u1", T0 + 1), point("u1", T0 + 2)], []])
    assert results == [InsertResult(2, 0), InsertResult(1, 0), InsertResult(1, 1), InsertResult(0, 0)]
    assert [p.fix.ts for p in store.query("u1")] == [T0, T0 + 1, T0 + 2]


def test_a_bad_point_leaves_every_batch_of_the_transaction_unstored(store: TrackStore) -> None:
    with pytest.raises(AttributeError):
        store.insert_batches([[point("u1", T0)], [NOT_A_POINT]])
    assert store.query("u1") == []


def test_query_by_unit_and_half_open_time_range(store: TrackStore) -> None:
    store.insert_many([point(u, T0 + t) for u in ("u1", "u2") for t in range(10)])
    assert [p.fix.ts - T0 for p in store.query("u1", since=T0 + 3, until=T0 + 6)] == [3, 4, 5]
    assert [p.fix.ts - T0 for p in store.query("u1", since=T0 + 8)] == [8, 9]
    assert [p.fix.ts - T0 for p in store.query("u1", until=T0 + 2)] == [0, 1]
    assert [p.fix.ts - T0 for p in store.query("u1", since=T0 + 2, limit=3)] == [2, 3, 4]
    assert store.query("u1", limit=0) == []
    assert store.query("u1", since=T0 + 5, until=T0 + 5) == []
    assert store.query("nobody") == []
    assert {p.unit_id for p in store.query("u2")} == {"u2"}


def test_empty_batch_is_fine(store: TrackStore) -> None:
    assert store.insert_many([]) == InsertResult(0, 0)


def test_a_bad_point_leaves_the_batch_unstored(store: TrackStore) -> None:
    with pytest.raises(AttributeError):
        store.insert_many([point("u1", T0), NOT_A_POINT])
    assert store.query("u1") == []


def test_negative_limit_is_refused(store: TrackStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        store.query("u1", limit=-1)


def test_close_is_idempotent_and_use_after_close_raises(store: TrackStore) -> None:
    store.close()
    store.close()
    with pytest.raises(TrackStoreClosed):
        store.query("u1")
    with pytest.raises(TrackStoreClosed):
        store.insert_many([point("u1", T0)])


async def test_blocking_calls_run_in_a_worker_thread(store: TrackStore) -> None:
    batches = [[point("u1", T0 + i * 100 + j) for j in range(100)] for i in range(8)]
    results = await asyncio.gather(*(asyncio.to_thread(store.insert_many, b) for b in batches))
    assert sum(r.inserted for r in results) == 800
    assert len(await asyncio.to_thread(store.query, "u1")) == 800


def test_sqlite_store_persists_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "tracks.db"
    first = SqliteTrackStore(path)
    first.insert_many([point("u1", T0), point("u1", T0 + 1)])
    first.close()
    reopened = SqliteTrackStore(path)
    try:
        assert reopened.insert_many([point("u1", T0 + 1)]) == InsertResult(0, 1)
        assert len(reopened.query("u1")) == 2
    finally:
        reopened.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        cols = [r[1] for r in conn.execute("PRAGMA table_info(fixes)")]
        assert {"unit_id", "ts", "action_id", "case_number"} <= set(cols)
        pk = [r[1] for r in sorted(conn.execute("PRAGMA table_info(fixes)"), key=lambda r: r[5]) if r[5]]
        assert pk == ["unit_id", "ts"]
    finally:
        conn.close()


def test_checkpoints_run_off_the_commit_path_and_close_empties_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "tracks.db"
    wal = tmp_path / "tracks.db-wal"
    store = SqliteTrackStore(path, checkpoint_interval_s=0.05, wal_limit_bytes=64 * 1024)
    try:
        # A fresh connection checkpoints every 1000 pages; the writer's never does.
        assert sqlite3.connect(path).execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
        assert store._open_conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        size0 = path.stat().st_size
        for k in range(20):  # ~20 commits of 200 rows: far more than the WAL limit
            store.insert_batches([[point(f"u{i:03d}", T0 + k)] for i in range(200)])
        deadline = time.monotonic() + 10
        while path.stat().st_size <= size0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert path.stat().st_size > size0  # the checkpointer copied pages into the database file
        assert len(store.query("u007")) == 20
    finally:
        store.close()
    assert not wal.exists() or wal.stat().st_size == 0
    assert store.checkpoint_errors == 0
    reopened = SqliteTrackStore(path)
    try:
        assert len(reopened.query("u199")) == 20
    finally:
        reopened.close()


# A track file the release of 2026-12-02 wrote (before versions: user_version 0): two units' fixes,
# the first 20 of bc-01 with an action and case, every other one with an altitude.
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tracks-2026-12-02.sqlite3"
FIXTURE_T0 = 1_796_198_400.0  # 2026-12-02T08:00:00Z


def rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM fixes ORDER BY unit_id, ts").fetchall()
    finally:
        conn.close()


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def test_a_file_from_before_versions_opens_with_its_rows_and_gets_the_version(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = Path(shutil.copyfile(FIXTURE, tmp_path / "tracks.sqlite3"))
    before = rows(path)
    assert user_version(path) == 0 and len(before) == 50
    with caplog.at_level(logging.INFO, logger="geo.track"):
        store = SqliteTrackStore(path)
    assert f"track store {path}: schema version 0 → 1" in caplog.text
    try:
        track = store.query("bc-01")
        assert [p.fix.ts for p in track] == [FIXTURE_T0 + i * 1.25 for i in range(40)]
        fix = Fix(38.04 + 1e-4, 114.51 + 1e-5, FIXTURE_T0 + 1.25, alt=80.5, accuracy=4.0, speed=1.2, heading=90.0)
        assert track[1] == TrackPoint("bc-01", fix, "act-0d759b599944", "（2026）冀0916执31号")
        assert track[20].action_id is None and track[20].fix.alt is None
        assert [p.fix.ts for p in store.query("car-02")] == [FIXTURE_T0 + i + 0.123456 for i in range(10)]
        assert store.insert_many([track[-1], point("bc-01", FIXTURE_T0 + 100)]) == InsertResult(1, 1)
    finally:
        store.close()
    assert user_version(path) == SCHEMA_VERSION == 1
    assert [r for r in rows(path) if r[1] != FIXTURE_T0 + 100] == before, "nothing lost, nothing changed"
    caplog.clear()
    new = tmp_path / "new.sqlite3"
    with caplog.at_level(logging.INFO, logger="geo.track"):
        SqliteTrackStore(new).close()
        SqliteTrackStore(path).close()
    assert user_version(new) == SCHEMA_VERSION and caplog.text == ""


def test_a_file_of_a_newer_version_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = Path(shutil.copyfile(FIXTURE, tmp_path / "tracks.sqlite3"))
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(TrackSchemaTooNew, match=f"{path}.*version {SCHEMA_VERSION + 1}.*newer release"):
        SqliteTrackStore(path)
    assert path.read_bytes() == before
    assert not (tmp_path / "tracks.sqlite3-wal").exists()

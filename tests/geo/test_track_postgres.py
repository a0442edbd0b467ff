"""What is particular to the tracks in PostgreSQL (the contract itself runs in test_track.py): the
tables and their version, nodes opening and writing one database together."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from geo.fix import Fix
from geo.track import SCHEMA_VERSION, InsertResult, TrackPoint, TrackSchemaTooNew
from geo.track_postgres import PostgresTrackStore

T0 = 1_790_000_000.0


def point(unit: str, ts: float) -> TrackPoint:
    return TrackPoint(unit, Fix(38.04, 114.51, ts), "act-1", "（2026）冀0916执31号")


def test_a_new_database_gets_the_tables_in_double_precision_and_the_version(postgres_url: str) -> None:
    PostgresTrackStore(postgres_url).close()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version FROM track_schema_version").fetchall() == [(SCHEMA_VERSION,)]
        types: dict[str, str] = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns"
                                  " WHERE table_name = 'track_fixes'").fetchall())
        assert {types[c] for c in ("ts", "lat", "lon", "alt", "accuracy", "speed", "heading")} == {"double precision"}
        key = conn.execute("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
                           " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'track_fixes'::regclass"
                           " AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)").fetchall()
        assert key == [("unit_id",), ("ts",)]


def test_nodes_opening_a_new_database_together_create_it_once(postgres_url: str) -> None:
    start = threading.Barrier(4)

    def open_store(_: int) -> PostgresTrackStore:
        start.wait(timeout=60)
        return PostgresTrackStore(postgres_url)

    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(open_store, range(4)))
    try:
        assert stores[0].insert_many([point("u1", T0)]) == InsertResult(1, 0)
        assert [len(s.query("u1")) for s in stores] == [1, 1, 1, 1]
    finally:
        for s in stores:
            s.close()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version FROM track_schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_a_database_of_a_newer_version_is_refused_and_left_as_it_is(postgres_url: str) -> None:
    store = PostgresTrackStore(postgres_url)
    store.insert_many([point("u1", T0)])
    store.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE track_schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    database = postgres_url.rsplit("/", 1)[1]
    with pytest.raises(TrackSchemaTooNew, match=f"{database}.*version {SCHEMA_VERSION + 1}.*newer release"):
        PostgresTrackStore(postgres_url)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version FROM track_schema_version").fetchall() == [(SCHEMA_VERSION + 1,)]
        assert conn.execute("SELECT count(*) FROM track_fixes").fetchone() == (1,)


def test_two_nodes_storing_the_same_points_at_once_store_each_once(postgres_url: str) -> None:
    # A unit that reconnects to another node resends what was not acknowledged while the first node
    # may still be committing it: both groups overlap, here in opposite orders, round after round.
    # Each point is stored once, counted once as inserted and once as a duplicate, and neither
    # transaction deadlocks (PostgreSQL would abort one of them).
    nodes = [PostgresTrackStore(postgres_url), PostgresTrackStore(postgres_url)]
    rounds = [[point(f"u{i % 20:02d}", T0 + r * 100 + i // 20) for i in range(2000)] for r in range(10)]
    start = threading.Barrier(2)

    def write(k: int) -> list[InsertResult]:
        out: list[InsertResult] = []
        try:
            for points in rounds:
                ordered = points if k == 0 else points[::-1]
                start.wait(timeout=60)
                out += nodes[k].insert_batches([ordered[i:i + 200] for i in range(0, len(ordered), 200)])
        except BaseException:
            start.abort()  # the other node stops waiting
            raise
        return out

    try:
        with ThreadPoolExecutor(2) as pool:
            results = [r for rs in pool.map(write, range(2)) for r in rs]
        assert sum(r.inserted for r in results) == 20_000 and sum(r.duplicates for r in results) == 20_000
        assert [p.fix.ts for p in nodes[1].query("u07", until=T0 + 200)] == [T0 + k for k in range(100)] + [
            T0 + 100 + k for k in range(100)]
    finally:
        for node in nodes:
            node.close()


def test_no_server_is_a_connection_error_naming_it_without_the_password() -> None:
    url = "postgresql://dispatch:secret-pw@127.0.0.1:1/nowhere"
    with pytest.raises(ConnectionError, match="dispatch:\\*\\*\\*@127.0.0.1:1/nowhere") as caught:
        PostgresTrackStore(url, connect_timeout_s=1)
    assert "secret-pw" not in str(caught.value)

"""Group commit: many callers' batches in one transaction, each caller answered after the commit;
on the SQLite and on the PostgreSQL store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import cast

import pytest

from geo.fix import Fix
from geo.track import InsertResult, SqliteTrackStore, TrackPoint, TrackStore, TrackStoreClosed
from geo.track_postgres import PostgresTrackStore
from geo.track_writer import TrackWriter

T0 = 1_790_000_000.0


def point(unit: str, ts: float) -> TrackPoint:
    return TrackPoint(unit, Fix(38.04, 114.51, ts))


class CountingStore:
    """A durable store, recording the batches of every transaction."""

    def __init__(self, store: TrackStore) -> None:
        self.store = store
        self.transactions: list[int] = []  # batches per insert_batches call

    def insert_many(self, points: Iterable[TrackPoint]) -> InsertResult:
        return self.store.insert_many(points)

    def insert_batches(self, batches: Sequence[Iterable[TrackPoint]]) -> list[InsertResult]:
        self.transactions.append(len(batches))
        return self.store.insert_batches(batches)

    def query(self, unit_id: str, since: float | None = None, until: float | None = None,
              limit: int | None = None) -> list[TrackPoint]:
        return self.store.query(unit_id, since, until, limit)

    def close(self) -> None:
        self.store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CountingStore]:
    durable: TrackStore = (SqliteTrackStore(tmp_path / "tracks.db") if request.param == "sqlite"
                           else PostgresTrackStore(request.getfixturevalue("postgres_url")))
    s = CountingStore(durable)
    yield s
    s.close()


async def test_concurrent_batches_are_committed_together_and_answered_each(store: CountingStore) -> None:
    writer = TrackWriter(store, interval_s=0.05)
    batches = [[point(f"u{i}", T0), point(f"u{i}", T0 + 1)] for i in range(200)]
    batches.append([point("u0", T0 + 1), point("u0", T0 + 2)])  # the same point again, submitted later
    results = await asyncio.gather(*(writer.insert(b) for b in batches))
    assert results[:200] == [InsertResult(2, 0)] * 200
    assert results[200] == InsertResult(1, 1)
    assert sum(store.transactions) == 201 and len(store.transactions) < 10
    assert [p.fix.ts for p in store.query("u0")] == [T0, T0 + 1, T0 + 2]
    await writer.close()


async def test_a_lone_batch_is_committed_without_waiting_for_the_interval(store: CountingStore) -> None:
    writer = TrackWriter(store, interval_s=3600)
    assert await asyncio.wait_for(writer.insert([point("u1", T0)]), 10) == InsertResult(1, 0)
    assert store.query("u1")[0].fix.ts == T0  # committed when answered
    await writer.close()


async def test_a_bad_batch_fails_only_its_own_caller(store: CountingStore) -> None:
    writer = TrackWriter(store, interval_s=0.05)
    await writer.insert([point("u0", T0)])  # the next group waits for the interval: all three go in it
    good1 = asyncio.ensure_future(writer.insert([point("u1", T0)]))
    bad = asyncio.ensure_future(writer.insert([cast(TrackPoint, "not a point")]))  # a caller with a bug
    good2 = asyncio.ensure_future(writer.insert([point("u2", T0)]))
    assert await good1 == InsertResult(1, 0) and await good2 == InsertResult(1, 0)
    with pytest.raises(AttributeError):
        await bad
    assert store.transactions[1] == 3  # tried together first
    assert [len(store.query(u)) for u in ("u1", "u2")] == [1, 1]
    await writer.close()


async def test_close_commits_what_is_queued_then_refuses(store: CountingStore) -> None:
    writer = TrackWriter(store, interval_s=0.05)
    await writer.insert([point("u0", T0)])
    pending = [asyncio.ensure_future(writer.insert([point("u1", T0 + i)])) for i in range(5)]
    await asyncio.sleep(0)  # queued
    await writer.close()
    assert all(f.done() and f.result() == InsertResult(1, 0) for f in pending)
    assert len(store.query("u1")) == 5
    with pytest.raises(TrackStoreClosed):
        await writer.insert([point("u1", T0 + 9)])
    await writer.close()  # idempotent


async def test_a_closed_store_fails_every_caller(store: CountingStore) -> None:
    writer = TrackWriter(store, interval_s=0.05)
    store.close()
    with pytest.raises(TrackStoreClosed):
        await writer.insert([point("u1", T0)])
    await writer.close()

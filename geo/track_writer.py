"""Group commit of track points: the batches of many concurrent callers, one transaction.

At 1 Hz from thousands of units, fixes arrive as thousands of one-point batches a second. A
transaction and a worker-thread hop per batch cost far more than the rows themselves, so
:class:`TrackWriter` queues the batches, and one worker-thread job stores everything queued in
one :meth:`geo.track.TrackStore.insert_batches` transaction. Each caller still awaits its own
result, so "acknowledged" keeps meaning "committed".

Timing: when idle, a batch is committed at once (no added delay for a lone unit); under load,
commits start at most every ``interval_s``, and whatever arrived meanwhile (including during the
previous commit) goes into the next one. The delay a caller sees is then at most about
``interval_s`` plus one commit. One commit runs at a time, so batches are stored in the order
they were submitted: of two batches holding the same point, the first submitted stores it.

Failures: if the grouped transaction fails, each batch is retried in a transaction of its own,
so one caller's bad batch fails only that caller. Not thread-safe: use it from one event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from geo.track import InsertResult, TrackPoint, TrackStore, TrackStoreClosed

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 0.05


class TrackWriter:
    """Queues batches of points for ``store`` and commits them in groups off the event loop."""

    def __init__(self, store: TrackStore, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, got {interval_s}")
        self.store = store
        self._interval_s = interval_s
        self._queue: list[tuple[Sequence[TrackPoint], asyncio.Future[InsertResult]]] = []
        self._task: asyncio.Task[None] | None = None
        self._last_commit = float("-inf")  # loop time a commit last started
        self._closed = False
        self.commits = 0  # transactions so far (for tests and benchmarks)

    async def insert(self, points: Sequence[TrackPoint]) -> InsertResult:
        """Store ``points`` (atomically, duplicates skipped and counted) and return once committed."""
        # A cancelled caller's points are still committed with the group, only its answer is
        # dropped: units resend what was not acknowledged, and the store ignores the duplicates.
        return await self.submit(points)

    def submit(self, points: Sequence[TrackPoint]) -> asyncio.Future[InsertResult]:
        """Queue ``points`` now; the future answers once they are committed (as :meth:`insert`).

        For a caller with other work to do meanwhile: the queue order, and so which of two
        batches holding the same point stores it, is the order of ``submit`` calls.
        """
        if self._closed:
            raise TrackStoreClosed("track writer is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[InsertResult] = loop.create_future()
        self._queue.append((points, fut))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="track-group-commit")
        return fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            wait = self._last_commit + self._interval_s - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_commit = loop.time()
            group, self._queue = self._queue, []
            results: list[InsertResult | Exception]
            try:
                results = await asyncio.to_thread(self._commit, [points for points, _ in group])
                self.commits += 1
            except asyncio.CancelledError:
                for _, fut in group + self._queue:
                    fut.cancel()
                raise
            except Exception as exc:  # e.g. the store was closed: every caller learns why
                results = [exc] * len(group)
            for (_, fut), result in zip(group, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)

    def _commit(self, batches: list[Sequence[TrackPoint]]) -> list[InsertResult | Exception]:
        """In a worker thread: all batches in one transaction, else each in its own."""
        try:
            return list(self.store.insert_batches(batches))
        except TrackStoreClosed:
            raise
        except Exception as exc:
            if len(batches) == 1:
                return [exc]
            logger.warning("group commit of %d batches failed (%s); committing them one by one", len(batches), exc)
        out: list[InsertResult | Exception] = []
        for batch in batches:
            try:
                out.append(self.store.insert_many(batch))
            except Exception as exc:
                out.append(exc)
        return out

    async def close(self) -> None:
        """Commit what is queued, then refuse new batches; idempotent. The store stays open."""
        self._closed = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

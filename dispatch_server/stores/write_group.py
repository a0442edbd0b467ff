"""Writes of one kind from many callers, applied together: one function call, one savepoint.

:meth:`Database.write` already shares one commit (one fsync) among the writes of a moment, but
runs each write on its own: a savepoint and its statements. When 1,000 units answer a broadcast
within half a second, each ``received`` is a handful of statements, and each statement hands the
GIL to the database thread and back; with the event loop busy, the thread waits up to a switch
interval (5 ms) to get it back every time, and the commits that hold the units' answers stretch
to 100 ms and more. A :class:`WriteGroup` hands every item queued since its last write to one
``apply(connection, items)``, which does the whole group in a few set-based statements.

Timing: a lone item is written at once (one loop iteration later); items that arrive while the
group's write is queued or committing go into the next one, as they would have waited for the
next commit anyway. Each caller awaits its own result, after the commit that holds its item, so
what a result means (e.g. "committed as delivered") does not change.

Failures: ``apply`` gives a result or an exception for each item (an item it refuses fails
alone, and must have written nothing). If ``apply`` raises, the group's savepoint is rolled back
and every item is written again on its own, so an item that makes the database fail fails only
its own caller. Not thread-safe: use it from the event loop of the database's writes.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Callable, Generic, TypeVar

from .database import Database

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class WriteGroupClosed(RuntimeError):
    """The group was closed; nothing more is written through it."""


class WriteGroup(Generic[T, R]):
    """Items for ``apply``, written in groups through ``db``; ``close()`` is idempotent."""

    def __init__(self, db: Database, apply: Callable[[sqlite3.Connection, list[T]], list[R | Exception]],
                 name: str) -> None:
        self._db = db
        self._apply = apply
        self._name = name
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.writes = 0  # group writes so far (for tests and benchmarks)

    async def write(self, item: T) -> R:
        """Write ``item`` with whatever else is queued; its result once committed."""
        if self._closed:
            raise WriteGroupClosed(f"write group {self._name} is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, fut))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name=f"write-group-{self._name}")
        return await fut

    def _applied(self, items: list[T]) -> Callable[[sqlite3.Connection], list[R | Exception]]:
        def apply(conn: sqlite3.Connection) -> list[R | Exception]:
            results = self._apply(conn, items)
            if len(results) != len(items):
                raise RuntimeError(f"write group {self._name}: {len(results)} results for {len(items)} items")
            return results

        return apply

    async def _alone(self, item: T) -> R | Exception:
        try:
            return (await self._db.write(self._applied([item])))[0]
        except Exception as exc:
            return exc

    async def _run(self) -> None:
        while self._queue:
            group, self._queue = self._queue, []
            items = [item for item, _ in group]
            results: list[R | Exception]
            try:
                try:
                    results = await self._db.write(self._applied(items))
                    self.writes += 1
                except Exception as exc:
                    if len(items) == 1:
                        results = [exc]
                    else:
                        logger.warning("write group %s: %d items failed together (%r); writing each alone",
                                       self._name, len(items), exc)
                        results = list(await asyncio.gather(*(self._alone(item) for item in items)))
            except asyncio.CancelledError:
                for _, fut in group + self._queue:
                    fut.cancel()
                raise
            for (_, fut), result in zip(group, results, strict=True):
                if fut.done():  # the caller gave up waiting; its item is written all the same
                    continue
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)

    async def close(self) -> None:
        """Write what is queued, then refuse new items."""
        self._closed = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

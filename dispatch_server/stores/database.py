"""The SQLite database under the data directory that holds the server's durable state.

The same file is used by the CLI (``add-unit``, ``add-user``) and by the running server, so WAL
mode is on and every write is a short transaction. Queries are blocking; the server runs them
through :meth:`Database.run` on the database's own thread so the event loop never waits on disk,
and durable writes through :meth:`Database.write`, which groups the writes of a moment into one
commit. The tables and which module owns each are in :mod:`dispatch_server.stores.schema`; opening
the file brings its schema to the version this code knows (:mod:`dispatch_server.stores.migrations`),
or refuses a newer one.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from . import migrations

T = TypeVar("T")


class Database:
    """The SQLite database of the server's durable state. ``close()`` is idempotent."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / "dispatch.sqlite3"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        try:
            self.migrated = migrations.upgrade(self._db, self.path)  # (from, to) schema versions
        except BaseException:
            self._db.close()
            raise
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self._flushes: set[asyncio.Task[None]] = set()
        self._batch: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking function (a query, a repository method) on the database's own thread."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in a durable transaction, grouped with other writes of the moment.

        Writes queued while one commit is in flight share the next commit (one fsync), each in
        its own SAVEPOINT, so one write that raises is rolled back alone and the others commit.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._batch.append((fn, future))
        if len(self._batch) == 1 and not self._flushes:
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        loop = asyncio.get_running_loop()
        if not batch:
            return

        def commit() -> list[tuple[bool, Any]]:
            results: list[tuple[bool, Any]] = []
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for fn, _ in batch:
                        self._db.execute("SAVEPOINT w")
                        try:
                            results.append((True, fn(self._db)))
                            self._db.execute("RELEASE w")
                        except Exception as exc:
                            self._db.execute("ROLLBACK TO w")
                            self._db.execute("RELEASE w")
                            results.append((False, exc))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            return results

        async def run() -> None:
            try:
                results = await self.run(commit)
            except BaseException as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                return
            for (ok, value), (_, fut) in zip(results, batch, strict=True):
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

        def done(task: asyncio.Task[None]) -> None:
            self._flushes.discard(task)
            if self._batch:  # writes that arrived during this commit share the next one
                self._flush()

        task = loop.create_task(run())
        self._flushes.add(task)
        task.add_done_callback(done)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._db.close()

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one statement (blocking: call it through :meth:`run`)."""
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` in one piece under the lock, outside any transaction (blocking: call it
        through :meth:`run`): reads of several statements, such as those over a temporary table."""
        with self._lock:
            return fn(self._db)

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        """Run one statement in its own transaction; the number of rows it changed (blocking)."""
        with self._lock:
            return self._db.execute(sql, args).rowcount

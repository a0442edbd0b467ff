"""The database of the server's durable state, behind one interface with two engines.

- :class:`SqliteDatabase` (the default, ``[storage] url`` empty): one SQLite file under the data
  directory, ``dispatch.sqlite3``. The same file is used by the CLI (``add-unit``, ``add-user``) and
  by the running server, so WAL mode is on and every write is a short transaction.
- :class:`dispatch_server.stores.postgres.PostgresDatabase` (``[storage] url = "postgresql://…"``):
  the same tables in PostgreSQL, shared by every node of a cluster.

Both are used the same way, and the domain modules do not know which one they talk to: queries are
blocking and run through :meth:`Database.run` on the database's own thread(s), so the event loop
never waits on the database; durable writes go through :meth:`Database.write`, which groups the
writes of a moment into one commit, each in its own savepoint. A write function gets a connection
with ``execute(sql, params)``/``executemany`` in SQLite's dialect (``?`` parameters); the
PostgreSQL engine translates it (:mod:`dispatch_server.stores.postgres`). The tables and which
module owns each are in :mod:`dispatch_server.stores.schema`; opening a database brings its schema
to the version this code knows (:mod:`dispatch_server.stores.migrations`), or refuses a newer one.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

import psycopg

from . import migrations

T = TypeVar("T")
# A row that breaks a constraint (a duplicate key), whichever the engine.
IntegrityError: tuple[type[Exception], ...] = (sqlite3.IntegrityError, psycopg.IntegrityError)
Batch = list[tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]]


class Database(ABC):
    """What the domain modules use of the durable store, whichever the engine. ``close()`` is idempotent."""

    engine = "?"
    path: Path | str  # what to call the database in messages (a file, or a URL without its password)
    migrated: tuple[int, int]  # (from, to) schema versions at open
    _threads = 1

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self._flushes: set[asyncio.Task[None]] = set()
        self._batch: Batch = []

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking function (a query, a repository method) on the database's own thread."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="store")
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

    @abstractmethod
    def _commit(self, batch: Batch) -> list[tuple[bool, Any]]:
        """Apply ``batch`` in one transaction, each write in its own savepoint (blocking)."""

    @staticmethod
    def _apply(conn: Any, batch: Batch) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        for fn, _ in batch:
            conn.execute("SAVEPOINT w")
            try:
                results.append((True, fn(conn)))
                conn.execute("RELEASE w")
            except Exception as exc:
                conn.execute("ROLLBACK TO w")
                conn.execute("RELEASE w")
                results.append((False, exc))
        return results

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        loop = asyncio.get_running_loop()
        if not batch:
            return

        async def run() -> None:
            try:
                results = await self.run(self._commit, batch)
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
        self._close()

    @abstractmethod
    def _close(self) -> None:
        """Release the engine's connections (once, from :meth:`close`)."""

    @abstractmethod
    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one statement (blocking: call it through :meth:`run`)."""

    @abstractmethod
    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` in one piece, outside any transaction (blocking: call it through
        :meth:`run`): reads of several statements, which may open a read transaction of their own."""

    @abstractmethod
    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        """Run one statement in its own transaction; the number of rows it changed (blocking)."""

    @abstractmethod
    def versions(self) -> tuple[int, int]:
        """``(found, latest)`` schema versions, without changing anything (blocking)."""

    def hold(self, key: int) -> bool:
        """Whether this process holds (or now takes) the cluster-wide role ``key``: one process of
        all that share the database does a job (shipping the audit trail to a ledger). It is held
        until the process ends or loses its database; then another takes it (blocking). SQLite:
        always (one node, or nodes on one host that coordinate otherwise)."""
        return True


class SqliteDatabase(Database):
    """The SQLite file ``<data_dir>/dispatch.sqlite3``."""

    engine = "sqlite"

    def __init__(self, data_dir: Path) -> None:
        super().__init__()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / "dispatch.sqlite3"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        try:
            self.migrated = migrations.upgrade(self._db, self.path)
        except BaseException:
            self._db.close()
            raise

    def _commit(self, batch: Batch) -> list[tuple[bool, Any]]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                results = self._apply(self._db, batch)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return results

    def _close(self) -> None:
        self._db.close()

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            return fn(self._db)

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    def versions(self) -> tuple[int, int]:
        with self._lock:
            return migrations.version(self._db), migrations.LATEST

"""The PostgreSQL engine of :class:`dispatch_server.stores.database.Database` (``[storage] url``).

Every node of a cluster points at the same PostgreSQL database: units, people and sessions, actions,
the instruction outbox, alerts, the audit trail, party requests and links, procedure breaks and the
statistics' day summaries live there, so losing a node loses none of them.

**Driver.** psycopg 3 with its connection pool (``psycopg_pool``). The domain modules' functions are
blocking functions of a connection, as with SQLite; they run on the database's threads
(:meth:`Database.run`), never on the event loop.

**One writer at a time, across nodes.** The domain code was written for SQLite, where a write
transaction (``BEGIN IMMEDIATE``) excludes every other writer, and relies on it: a unit's next ``seq``
is read, then written. Here every write transaction first takes one transaction-level advisory lock
(:data:`WRITE_LOCK`), so writes of all nodes are serialised exactly as SQLite serialises the writes of
its processes, and a unit's ``seq`` stays gap-free and race-free with several nodes writing. Since
:meth:`Database.write` groups the writes of a moment into one transaction, the lock is taken once per
group commit, not once per write. Reads take no lock; a read of several statements that needs one
snapshot (SQLite's deferred ``BEGIN``) runs in a ``REPEATABLE READ`` transaction.

**Dialect.** The modules write SQLite's SQL; :func:`translate` turns a statement into PostgreSQL's
(cached): ``?`` parameters, ``INSERT OR IGNORE``/``OR REPLACE``, ``IS ?``. What SQLite has built in
and the modules use — ``json_extract``, the scalar ``MAX(a, b)``/``MIN(a, b)``, the ``TOTAL``
aggregate — the schema defines as functions (:data:`COMPAT`). A statement that needs a different text
altogether is registered with :func:`variant` by the module that owns it.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator, Sequence, TypeVar

import psycopg
import psycopg_pool

from sqlcompat import begin, display

from ..errors import DispatchError
from .database import Batch, Database
from .dialect import WRITE_LOCK, translate

T = TypeVar("T")
UNREACHABLE = (psycopg.OperationalError, psycopg_pool.PoolTimeout)


class StorageUnavailable(DispatchError):
    """PostgreSQL did not answer (down, restarting, the network): the request is answered 503 and
    the other requests go on; the pool reconnects by itself when the server is back."""

    status = 503
    code = "storage_unavailable"

class PgCursor:
    """The part of :class:`sqlite3.Cursor` the modules use."""

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur
        self.rowcount = cur.rowcount

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._cur.fetchall() if self._cur.description is not None else []

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._cur.fetchone() if self._cur.description is not None else None

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.fetchall())


class PgConnection:
    """The part of :class:`sqlite3.Connection` the modules use, over a psycopg connection in
    autocommit mode: statements in SQLite's dialect, and its transaction verbs (``BEGIN IMMEDIATE``:
    a write transaction, which takes :data:`WRITE_LOCK`; ``BEGIN``: a read snapshot)."""

    engine = "postgresql"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> PgCursor:
        if begin(self._conn, sql, WRITE_LOCK):
            return PgCursor(self._conn.cursor())
        cur = self._conn.cursor()
        cur.execute(translate(sql), tuple(args) if args else None)
        return PgCursor(cur)

    def executemany(self, sql: str, rows: Any) -> PgCursor:
        cur = self._conn.cursor()
        cur.executemany(translate(sql), [tuple(r) for r in rows])
        return PgCursor(cur)


class PostgresDatabase(Database):
    """The server's durable state in the PostgreSQL database at ``url``."""

    engine = "postgresql"

    def __init__(self, url: str, pool_size: int = 4, connect_timeout_s: float = 30.0) -> None:
        super().__init__()
        from . import migrations

        self.url = url
        self.path = display(url)
        self._threads = pool_size
        try:  # one plain connection first: its error says why (refused, password, no such database)
            psycopg.connect(url, connect_timeout=max(1, int(connect_timeout_s))).close()
        except psycopg.OperationalError as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ConnectionError(f"PostgreSQL at {self.path}: {reason}") from None
        self._pool = psycopg_pool.ConnectionPool(
            url, min_size=1, max_size=pool_size, kwargs={"autocommit": True}, open=False,
            name="dispatch", timeout=min(connect_timeout_s, 5.0), reconnect_timeout=24 * 3600.0,
            check=psycopg_pool.ConnectionPool.check_connection)
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except psycopg_pool.PoolTimeout:
            self._pool.close()
            raise ConnectionError(f"PostgreSQL at {self.path}: no connection within {connect_timeout_s:.0f} s") \
                from None
        self._write_lock = threading.Lock()
        self._roles: dict[int, tuple[psycopg.Connection[Any], bool]] = {}  # key -> (session, held)
        self._roles_lock = threading.Lock()
        try:
            with self._pool.connection() as conn:
                self.migrated = migrations.upgrade_postgres(PgConnection(conn), self.path)
        except BaseException:
            self._pool.close()
            raise

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await super().run(fn, *args)
        except UNREACHABLE as exc:
            raise StorageUnavailable(f"the database ({self.path}) cannot be reached: "
                                     f"{' '.join(str(exc).split()) or type(exc).__name__}; "
                                     "the request was not completed, try again") from None

    def _commit(self, batch: Batch) -> list[tuple[bool, Any]]:
        with self._write_lock, self._pool.connection() as raw:
            conn = PgConnection(raw)
            conn.execute("BEGIN IMMEDIATE")
            try:
                results = self._apply(conn, batch)
                raw.execute("COMMIT")
            except BaseException:
                raw.execute("ROLLBACK")
                raise
        return results

    def hold(self, key: int) -> bool:
        """A session advisory lock on a connection of its own, kept while the process lives: when the
        holder dies its connection ends and the lock is free for the next process that asks."""
        with self._roles_lock:
            session, held = self._roles.get(key, (None, False))
            try:
                if session is None or session.closed:
                    session = psycopg.connect(self.url, autocommit=True, connect_timeout=5,
                                              application_name=f"dispatch role {key}")
                    held = False
                if held:
                    session.execute("SELECT 1")  # still connected: still held
                else:
                    held = bool(session.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0])  # type: ignore[index]
                self._roles[key] = (session, held)
                return held
            except psycopg.Error:
                if session is not None:
                    session.close()
                self._roles.pop(key, None)
                return False

    def _close(self) -> None:
        with self._roles_lock:
            for session, _ in self._roles.values():
                session.close()
            self._roles.clear()
        self._pool.close()

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._pool.connection() as raw:
            return PgConnection(raw).execute(sql, args).fetchall()

    def read(self, fn: Callable[[Any], T]) -> T:
        with self._pool.connection() as raw:
            return fn(PgConnection(raw))

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self._pool.connection() as raw:
            conn = PgConnection(raw)
            conn.execute("BEGIN IMMEDIATE")
            try:
                n = conn.execute(sql, args).rowcount
                raw.execute("COMMIT")
            except BaseException:
                raw.execute("ROLLBACK")
                raise
            return n

    def versions(self) -> tuple[int, int]:
        from . import migrations

        with self._pool.connection() as raw:
            return migrations.version_postgres(PgConnection(raw)), migrations.LATEST

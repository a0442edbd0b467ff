"""Durable state in SQLite under the data directory: units, people and sessions.

The same file is used by the CLI (``add-unit``, ``add-user``) and by the running server, so WAL
mode is on and every write is its own short transaction. Methods are blocking; the server calls
them through :meth:`Store.run` on a dedicated thread so the event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS units (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users(username),
    role TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions(expires_at);
CREATE TABLE IF NOT EXISTS actions (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL,              -- JSON of the action (see actions.py)
    state TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS instructions (
    id TEXT PRIMARY KEY,
    unit_id TEXT NOT NULL,
    seq INTEGER NOT NULL,           -- per-unit, monotonic, never reused
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    priority TEXT NOT NULL,
    state TEXT NOT NULL,
    action_id TEXT,
    case_number TEXT,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    ack_deadline_s REAL NOT NULL,
    delivered_at REAL, acknowledged_at REAL, done_at REAL, refused_at REAL, expired_at REAL,
    reason TEXT,
    overdue_alerted INTEGER NOT NULL DEFAULT 0,
    UNIQUE (unit_id, seq)
);
CREATE INDEX IF NOT EXISTS instructions_pending ON instructions(unit_id, state, seq);
CREATE INDEX IF NOT EXISTS instructions_expiry ON instructions(state, expires_at);
CREATE TABLE IF NOT EXISTS unit_seq (unit_id TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    actor TEXT NOT NULL,            -- username, "unit:<id>" or "system"
    verb TEXT NOT NULL,             -- e.g. instruction.delivered
    subject TEXT NOT NULL,          -- e.g. instruction id
    detail TEXT NOT NULL            -- JSON
);
-- party access (party.py)
CREATE TABLE IF NOT EXISTS party_codes (
    code_hash TEXT PRIMARY KEY, case_number TEXT NOT NULL, party_name TEXT NOT NULL,
    issued_by TEXT NOT NULL, issued_at REAL NOT NULL, expires_at REAL NOT NULL, used_at REAL
);
CREATE TABLE IF NOT EXISTS party_sessions (
    token_hash TEXT PRIMARY KEY, case_number TEXT NOT NULL, party_name TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS party_failures (
    key TEXT PRIMARY KEY, failures INTEGER NOT NULL, locked_until REAL NOT NULL, last_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS footage_requests (
    id TEXT PRIMARY KEY, case_number TEXT NOT NULL, state TEXT NOT NULL, doc TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS footage_requests_case ON footage_requests(case_number);
CREATE TABLE IF NOT EXISTS party_links (
    id TEXT PRIMARY KEY, token_hash TEXT UNIQUE NOT NULL, request_id TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL NOT NULL, revoked_at REAL, revoked_by TEXT, uses INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True)
class UnitRecord:
    id: str
    kind: str
    token_hash: str
    created_at: float
    disabled: bool


@dataclass(frozen=True)
class UserRecord:
    username: str
    role: str
    password_hash: str
    created_at: float
    disabled: bool


@dataclass(frozen=True)
class SessionRecord:
    token_hash: str
    username: str
    role: str
    created_at: float
    expires_at: float


class Store:
    """SQLite-backed store. ``close()`` is idempotent."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / "dispatch.sqlite3"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self._flushes: set[asyncio.Task[None]] = set()
        self._batch: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking store method on the store's own thread."""
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
            for (ok, value), (_, fut) in zip(results, batch):
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

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one statement (used by the domain modules that own their tables)."""
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in one immediate transaction, committed durably (synchronous=FULL)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

    # units ---------------------------------------------------------------------------------
    def add_unit(self, unit_id: str, kind: str, token_hash: str, now: float) -> None:
        """Create a unit; raises ``KeyError`` if it exists."""
        try:
            self._exec(
                "INSERT INTO units(id, kind, token_hash, created_at) VALUES (?,?,?,?)",
                (unit_id, kind, token_hash, now),
            )
        except sqlite3.IntegrityError:
            raise KeyError(unit_id) from None

    def set_unit_token(self, unit_id: str, token_hash: str) -> bool:
        cur = self._exec("UPDATE units SET token_hash=? WHERE id=?", (token_hash, unit_id))
        return cur.rowcount == 1

    def get_unit(self, unit_id: str) -> UnitRecord | None:
        row = self._exec(
            "SELECT id, kind, token_hash, created_at, disabled FROM units WHERE id=?", (unit_id,)
        ).fetchone()
        return UnitRecord(*row[:4], bool(row[4])) if row else None

    def list_units(self) -> list[UnitRecord]:
        rows = self._exec("SELECT id, kind, token_hash, created_at, disabled FROM units ORDER BY id").fetchall()
        return [UnitRecord(*r[:4], bool(r[4])) for r in rows]

    # users ---------------------------------------------------------------------------------
    def add_user(self, username: str, role: str, password_hash: str, now: float) -> None:
        try:
            self._exec(
                "INSERT INTO users(username, role, password_hash, created_at) VALUES (?,?,?,?)",
                (username, role, password_hash, now),
            )
        except sqlite3.IntegrityError:
            raise KeyError(username) from None

    def set_user_password(self, username: str, password_hash: str) -> bool:
        cur = self._exec("UPDATE users SET password_hash=? WHERE username=?", (password_hash, username))
        return cur.rowcount == 1

    def get_user(self, username: str) -> UserRecord | None:
        row = self._exec(
            "SELECT username, role, password_hash, created_at, disabled FROM users WHERE username=?",
            (username,),
        ).fetchone()
        return UserRecord(*row[:4], bool(row[4])) if row else None

    def count_users(self) -> int:
        return int(self._exec("SELECT COUNT(*) FROM users").fetchone()[0])

    # sessions ------------------------------------------------------------------------------
    def add_session(self, rec: SessionRecord) -> None:
        self._exec(
            "INSERT INTO sessions(token_hash, username, role, created_at, expires_at) VALUES (?,?,?,?,?)",
            (rec.token_hash, rec.username, rec.role, rec.created_at, rec.expires_at),
        )

    def get_session(self, token_hash: str) -> SessionRecord | None:
        row = self._exec(
            "SELECT token_hash, username, role, created_at, expires_at FROM sessions WHERE token_hash=?",
            (token_hash,),
        ).fetchone()
        return SessionRecord(*row) if row else None

    def delete_session(self, token_hash: str) -> None:
        self._exec("DELETE FROM sessions WHERE token_hash=?", (token_hash,))

    def purge_sessions(self, now: float) -> int:
        return self._exec("DELETE FROM sessions WHERE expires_at < ?", (now,)).rowcount

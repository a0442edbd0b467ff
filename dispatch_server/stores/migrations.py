"""Versions of the server database's schema, and the steps from each one to the next.

The version is SQLite's ``PRAGMA user_version``. Every process that opens the database (the
server, ``add-unit`` and the other commands) brings it to :data:`LATEST` first (:func:`upgrade`);
``dispatch-server migrate`` does only that, and says from which version to which. Each step runs in
its own ``BEGIN IMMEDIATE`` transaction with the version it reaches, so a step is applied whole or
not at all, and two processes opening the same file at once apply it once.

- **0**: no version. Either an empty file or a database made before versions existed (up to
  2026-12-02): its tables are :data:`schema.SCHEMA` with some of :data:`schema.ADDED_COLUMNS`.
  Step 1 makes the one into the other (every statement idempotent), then the version is 1.
- **1**: :data:`schema.SCHEMA`, :data:`schema.ADDED_COLUMNS`, :data:`schema.AFTER_COLUMNS`.
- **2**: statistics' day summaries and the triggers that mark what changed
  (:data:`dispatch_server.stores.stats_days.SCHEMA`).

**PostgreSQL** (:mod:`dispatch_server.stores.postgres`) has the same versions, with the same
meaning: :data:`STEPS_POSTGRES` makes each in PostgreSQL's types (a new database goes straight to
the tables as they are now, since there is no older PostgreSQL database to bring along). The version
is the one row of ``schema_version``; each step runs in one transaction that holds the store's
writer lock, so nodes starting together apply it once.

A database of a newer version than this code knows is refused (:class:`SchemaTooNew`): the code
cannot know what the newer release changed. A later change to the schema is a new step here, never
an edit of an earlier one.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any, Callable

from ..errors import DispatchError
from . import dialect, stats_days
from .schema import ADDED_COLUMNS, AFTER_COLUMNS, SCHEMA

logger = logging.getLogger(__name__)


class SchemaTooNew(DispatchError):
    code = "schema_too_new"


def statements(script: str) -> list[str]:
    """The statements of a script (triggers whole), to run one by one inside a transaction:
    ``executescript`` would commit first."""
    out, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n\t;"):
                out.append(pending.strip())
            pending = ""
    return out


def _run(script: str) -> Callable[[sqlite3.Connection], None]:
    def step(conn: sqlite3.Connection) -> None:
        for statement in statements(script):
            conn.execute(statement)
    return step


def _baseline(conn: sqlite3.Connection) -> None:
    _run(SCHEMA)(conn)
    for table, column, kind in ADDED_COLUMNS:
        if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    _run(AFTER_COLUMNS)(conn)


STEPS: dict[int, tuple[str, Callable[[sqlite3.Connection], None]]] = {
    1: ("the schema as it was before versions (tables, added columns, indexes)", _baseline),
    2: ("statistics' day summaries (stats_days, stats_changes, triggers)", _run(stats_days.SCHEMA)),
}
LATEST = max(STEPS)


def _run_postgres(script: str) -> Callable[[Any], None]:
    def step(conn: Any) -> None:
        conn.execute(script)  # a script of several statements: psycopg sends it whole
    return step


STEPS_POSTGRES: dict[int, Callable[[Any], None]] = {
    1: _run_postgres(dialect.COMPAT + dialect.ddl(SCHEMA) + dialect.ddl(AFTER_COLUMNS)),
    2: _run_postgres(stats_days.SCHEMA_POSTGRES),
}
assert STEPS_POSTGRES.keys() == STEPS.keys(), "every version has a step for each engine"


def version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def check(conn: sqlite3.Connection, path: Path | str) -> int:
    """The database's version; :class:`SchemaTooNew` when this code does not know it."""
    found = version(conn)
    if found > LATEST:
        raise SchemaTooNew(
            f"the database {path} has schema version {found}, and this release knows versions up to {LATEST}: "
            "it was used by a newer release. Run that release, or restore a backup taken for this one "
            "(the database was not changed)")
    return found


def upgrade(conn: sqlite3.Connection, path: Path | str) -> tuple[int, int]:
    """Bring the database (a connection in autocommit mode) to :data:`LATEST`; ``(from, to)``."""
    start = check(conn, path)
    for target in range(start + 1, LATEST + 1):
        what, step = STEPS[target]
        conn.execute("BEGIN IMMEDIATE")
        try:
            if check(conn, path) >= target:  # another process got there first
                conn.execute("COMMIT")
                continue
            step(conn)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if start:  # (a new file goes through every step: not worth a line each)
            logger.info("database %s: schema version %d → %d: %s", path, target - 1, target, what)
    return start, LATEST


def version_postgres(conn: Any) -> int:
    """The version of a PostgreSQL database (``conn``: a :class:`PgConnection`); 0 when it has none."""
    if conn.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def upgrade_postgres(conn: Any, where: str) -> tuple[int, int]:
    """:func:`upgrade` for PostgreSQL (``conn``: a :class:`PgConnection` in autocommit mode)."""
    start = check_postgres(conn, where)
    for target in range(start + 1, LATEST + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            if version_postgres(conn) >= target:  # another node got there first
                conn.execute("COMMIT")
                continue
            STEPS_POSTGRES[target](conn)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version(version) VALUES (?)", (target,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if start:
            logger.info("database %s: schema version %d → %d: %s", where, target - 1, target, STEPS[target][0])
    return start, LATEST


def check_postgres(conn: Any, where: str) -> int:
    """:func:`check` for PostgreSQL."""
    start = version_postgres(conn)
    if start > LATEST:
        raise SchemaTooNew(
            f"the database {where} has schema version {start}, and this release knows versions up to {LATEST}: "
            "it was used by a newer release. Run that release, or restore a backup taken for this one "
            "(the database was not changed)")
    return start

"""The catalog (:mod:`recordings.catalog`) in PostgreSQL: one catalog for every node's archive.

A cluster's nodes share one PostgreSQL database (``[storage] url``). Each node keeps its own
evidence archive and ledger as files and syncs its **part** of the catalog from them: every row
carries the ``ledger_node`` whose ledger it came from, keys that are a ledger index alone become
``(ledger_node, ledger_index)``, the sync state (``meta``) is per node, and a rebuild deletes only the
node's own rows. Searches, statistics and holds read every node's rows.

**Where.** The tables live in their own PostgreSQL schema, :data:`SCHEMA_NAME`, which the
connection puts first on its ``search_path``: the catalog's SQL names its tables as on SQLite
(``recordings``, ``segments``, ``meta`` …) and never meets the dispatch tables of the same
database. The node of a connection is the setting ``evidence.node``; a row inserted without a
``ledger_node`` gets it by default, and :data:`OWN` selects the node's own rows.

**Dialect.** The catalog's statements are written once, in SQLite's dialect; :data:`DIALECT`
(:mod:`sqlcompat`, as for the server database) turns one into PostgreSQL's: ``?`` parameters,
``INSERT OR IGNORE``/``OR REPLACE`` (:data:`REPLACE_KEYS`), and the column ``end``, a reserved word,
quoted. SQLite's scalar ``MAX(a, b)``/``MIN(a, b)`` and ``json_extract`` (the audit trail's filters)
are functions of the schema (:data:`sqlcompat.COMPAT`). Times are ``DOUBLE PRECISION`` (PostgreSQL's
``REAL`` is 4 bytes), sums come back as ``int`` or ``float`` (not ``Decimal``).

**One writer at a time.** A write transaction (``BEGIN IMMEDIATE``) first takes the advisory lock
:data:`WRITE_LOCK` (its own, not the dispatch database's), so the syncs of all nodes, the day
summaries' stamps (:mod:`recordings.day_cache`) and the holds every node shares are written one
transaction at a time, as SQLite's writer lock does for the file.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, Iterator, Sequence

import psycopg
from psycopg.adapt import Loader

from sqlcompat import COMPAT, Dialect, begin, ddl

from . import catalog_stats, day_cache

logger = logging.getLogger(__name__)

SCHEMA_NAME = "evidence_catalog"
WRITE_LOCK = 0x65766361  # pg_advisory_xact_lock key of the catalog's writer ("evca")
LAYOUT = 1  # of the tables below; another is refused (see open_connection)
OWN = "ledger_node = current_setting('evidence.node')"  # the rows of this connection's node

_NODE = "ledger_node TEXT NOT NULL DEFAULT current_setting('evidence.node')"
_HOURS_OF_NEW = (  # the hours a recording's segments (two each) and gaps touch: catalog_stats' trigger
    f"SELECT floor(s.start / {day_cache.HOUR})::BIGINT + k AS h FROM segments s, (VALUES (0), (1)) AS v(k) "
    f"WHERE s.recording_id = NEW.id AND s.start IS NOT NULL "
    f"UNION SELECT floor(g.start / {day_cache.HOUR})::BIGINT FROM gaps g WHERE g.recording_id = NEW.id "
    "AND g.start IS NOT NULL")
P = catalog_stats.PREFIX
DDL = f"""
CREATE TABLE layout (version INTEGER NOT NULL);
INSERT INTO layout VALUES ({LAYOUT});
{COMPAT}
CREATE TABLE meta ({_NODE}, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (ledger_node, key));
CREATE TABLE recordings (
    id TEXT PRIMARY KEY, {_NODE}, unit_id TEXT, action_id TEXT, case_number TEXT, officers TEXT NOT NULL DEFAULT '[]',
    category TEXT, node TEXT, video_codec TEXT, audio_codec TEXT, opened_at DOUBLE PRECISION,
    closed_at DOUBLE PRECISION, state TEXT NOT NULL DEFAULT 'open', close_reason TEXT, end_cause TEXT,
    opened_index BIGINT, closed_index BIGINT);
CREATE INDEX recordings_ledger_node ON recordings(ledger_node);
CREATE INDEX recordings_unit ON recordings(unit_id, opened_at);
CREATE INDEX recordings_case ON recordings(case_number);
CREATE INDEX recordings_action ON recordings(action_id);
CREATE INDEX recordings_opened ON recordings(opened_at);
CREATE TABLE recording_officers (
    recording_id TEXT NOT NULL, officer TEXT NOT NULL, {_NODE}, PRIMARY KEY (recording_id, officer));
CREATE INDEX officers_name ON recording_officers(officer);
CREATE INDEX officers_ledger_node ON recording_officers(ledger_node);
CREATE TABLE segments (
    recording_id TEXT NOT NULL, seq BIGINT NOT NULL, {_NODE}, path TEXT NOT NULL, sha256 TEXT, bytes BIGINT,
    start DOUBLE PRECISION, "end" DOUBLE PRECISION, offset_s DOUBLE PRECISION, duration_s DOUBLE PRECISION,
    frames_video BIGINT, frames_audio BIGINT, recovered BIGINT NOT NULL DEFAULT 0, sealed_index BIGINT,
    deleted BIGINT NOT NULL DEFAULT 0, deleted_at DOUBLE PRECISION, deleted_reason TEXT, deleted_index BIGINT,
    PRIMARY KEY (recording_id, seq));
CREATE INDEX segments_ledger_node ON segments(ledger_node, deleted);
CREATE TABLE gaps (
    {_NODE}, ledger_index BIGINT NOT NULL, recording_id TEXT NOT NULL, start DOUBLE PRECISION,
    "end" DOUBLE PRECISION, cause TEXT, seconds DOUBLE PRECISION, PRIMARY KEY (ledger_node, ledger_index));
CREATE INDEX gaps_recording ON gaps(recording_id);
CREATE TABLE holds (
    case_number TEXT PRIMARY KEY, {_NODE}, reason TEXT, actor TEXT, set_at DOUBLE PRECISION, ledger_index BIGINT);
CREATE TABLE snapshots (
    id TEXT PRIMARY KEY, {_NODE}, unit_id TEXT, action_id TEXT, case_number TEXT, instruction_id TEXT,
    path TEXT NOT NULL, sha256 TEXT, bytes BIGINT, content_type TEXT, taken_at DOUBLE PRECISION,
    received_at DOUBLE PRECISION, sealed_index BIGINT);
CREATE INDEX snapshots_ledger_node ON snapshots(ledger_node);
CREATE INDEX snapshots_unit ON snapshots(unit_id, received_at);
CREATE INDEX snapshots_case ON snapshots(case_number, received_at);
CREATE INDEX snapshots_action ON snapshots(action_id, received_at);
CREATE INDEX snapshots_received ON snapshots(received_at);
CREATE TABLE operator_actions (
    {_NODE}, ledger_index BIGINT NOT NULL, seq BIGINT NOT NULL, at DOUBLE PRECISION, actor TEXT, verb TEXT,
    subject TEXT, detail TEXT NOT NULL DEFAULT '{{}}', PRIMARY KEY (ledger_node, ledger_index));
CREATE INDEX operator_actions_subject ON operator_actions(subject, seq);
CREATE INDEX operator_actions_seq ON operator_actions(seq);
CREATE INDEX segments_span ON segments(start, "end", recording_id, bytes);
CREATE INDEX segments_deleted_at ON segments(deleted_at) WHERE deleted=1;
CREATE INDEX segments_live_bytes ON segments(bytes) WHERE deleted=0;
CREATE INDEX gaps_start ON gaps(start);
""" + ddl(day_cache.schema(P)) + day_cache.change_triggers_postgres(
    P, "segments", ("ROW.start", 'ROW."end"', "ROW.deleted_at"),
    ("start", '"end"', "recording_id", "bytes", "deleted", "deleted_at"), WRITE_LOCK) + \
    day_cache.change_triggers_postgres(
    P, "gaps", ("ROW.start",), ("start", '"end"', "recording_id", "cause", "seconds"), WRITE_LOCK) + f"""
CREATE FUNCTION {P}_recordings_marks() RETURNS TRIGGER LANGUAGE plpgsql AS $f$
BEGIN
    IF OLD.unit_id IS DISTINCT FROM NEW.unit_id OR OLD.action_id IS DISTINCT FROM NEW.action_id THEN
        PERFORM {P}_mark(h::DOUBLE PRECISION * {day_cache.HOUR}) FROM ({_HOURS_OF_NEW}) AS hours;
    END IF;
    RETURN NULL;
END $f$;
CREATE TRIGGER {P}_recordings_upd AFTER UPDATE OF unit_id, action_id ON recordings
    FOR EACH ROW EXECUTE FUNCTION {P}_recordings_marks();
"""

# The conflict target of ``INSERT OR REPLACE INTO <table>``: its primary key.
REPLACE_KEYS = {"meta": ("ledger_node", "key"), "recordings": ("id",), "segments": ("recording_id", "seq"),
                "gaps": ("ledger_node", "ledger_index"), "holds": ("case_number",), "snapshots": ("id",),
                "operator_actions": ("ledger_node", "ledger_index")}

DIALECT = Dialect(REPLACE_KEYS, reserved=("end",))
translate = DIALECT.translate


class Row(tuple[Any, ...]):
    """A row by position and by column name, as :class:`sqlite3.Row`."""

    _names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: psycopg.Cursor[Any]) -> Any:
    names = {c.name: i for i, c in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> Row:
        row = Row(values)
        row._names = names
        return row
    return make


class _NumberLoader(Loader):
    """``numeric`` (what ``SUM`` of integers gives) as ``int``, or ``float`` when it has a fraction."""

    def load(self, data: Any) -> int | float:
        value = Decimal(bytes(data).decode())
        return int(value) if value == value.to_integral_value() else float(value)


class Cursor:
    """The part of :class:`sqlite3.Cursor` the catalog uses."""

    row_factory: Any = None  # rows are always :class:`Row`

    def __init__(self, cur: psycopg.Cursor[Any] | None) -> None:
        self._cur = cur

    def fetchall(self) -> list[Row]:
        return self._cur.fetchall() if self._cur is not None and self._cur.description is not None else []

    def fetchone(self) -> Row | None:
        return self._cur.fetchone() if self._cur is not None and self._cur.description is not None else None

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())


class Connection:
    """The part of :class:`sqlite3.Connection` the catalog uses, on PostgreSQL, for the node
    ``node``: statements in SQLite's dialect and its transaction verbs (``BEGIN IMMEDIATE``: a write
    transaction, which takes :data:`WRITE_LOCK`; ``BEGIN``: a read snapshot). A connection lost
    between transactions (the server restarted, an administrator ended it) is opened again, and a
    statement outside a transaction that met the loss runs again once on the new connection; in a
    transaction the error is raised (the caller rolls back, as on SQLite). The connection shows as
    ``evidence_catalog <node>`` (``application_name``) in ``pg_stat_activity``."""

    engine = "postgresql"

    def __init__(self, url: str, node: str, connect_timeout_s: float = 30.0) -> None:
        if not node:
            raise ValueError("a catalog on PostgreSQL needs the node's name")
        self.url, self.node, self._timeout = url, node, connect_timeout_s
        self._conn = self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self._timeout)),
                               row_factory=_row_factory, application_name=f"{SCHEMA_NAME} {self.node}"[:63])
        try:
            conn.adapters.register_loader("numeric", _NumberLoader)
            conn.execute("SELECT set_config('evidence.node', %s, false)", (self.node,))
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (SCHEMA_NAME,)).fetchone() is None:
                    conn.execute(f"CREATE SCHEMA {SCHEMA_NAME}")
                    conn.execute(f"SET LOCAL search_path = {SCHEMA_NAME}")
                    conn.execute(DDL)
            conn.execute(f"SET search_path = {SCHEMA_NAME}")
            found = conn.execute("SELECT version FROM layout").fetchone()
            if found is None or found[0] != LAYOUT:
                raise RuntimeError(f"the evidence catalog in PostgreSQL (schema {SCHEMA_NAME}) has layout "
                                   f"{found[0] if found else None}, this release knows {LAYOUT}: "
                                   f"drop the schema {SCHEMA_NAME} (a projection: every node rebuilds its part)")
        except BaseException:
            conn.close()
            raise
        return conn

    def _ready(self) -> psycopg.Connection[Any]:
        if self._conn.closed:  # lost (psycopg closes a broken connection)
            self._conn = self._connect()
        return self._conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        conn = self._ready()
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            return self._execute(conn, sql, args)
        try:
            return self._execute(conn, sql, args)
        except psycopg.OperationalError:
            if not conn.closed:
                raise
            logger.warning("evidence catalog (node %s): connection to PostgreSQL lost; connecting again", self.node)
            return self._execute(self._ready(), sql, args)

    def _execute(self, conn: psycopg.Connection[Any], sql: str, args: Sequence[Any]) -> Cursor:
        if begin(conn, sql, WRITE_LOCK):
            return Cursor(None)
        return Cursor(conn.execute(translate(sql), tuple(args)))

    def executemany(self, sql: str, rows: Any) -> Cursor:
        cur = self._ready().cursor()
        cur.executemany(translate(sql), [tuple(r) for r in rows])
        return Cursor(cur)

    def close(self) -> None:
        self._conn.close()

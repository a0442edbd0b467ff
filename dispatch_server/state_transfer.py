"""Moving a court's durable state from one database to another (``export-state``, ``import-state``,
``migrate --to``): from SQLite into PostgreSQL when a court grows into a cluster, or back.

**What moves.** Every table of :data:`dispatch_server.stores.schema.SCHEMA` (:data:`TABLES`: units,
people and sessions, actions, the instruction outbox and ``unit_seq``, alerts, the audit trail,
party codes, sessions, requests and links, procedure breaks and notices), row for row, with every
column. The statistics' day summaries (``stats_days``, ``stats_changes``: :data:`RECOMPUTED`) are
not moved: they are a cache of the rows, and the triggers that fire as the instructions and alerts
are written into the target mark every hour to be summed up again. A source database with a table
that is in neither list is refused, so a table added by a later schema step cannot be left behind
unnoticed. Per-node files (recordings catalog, GPS tracks, the evidence archive and its ledger)
stay where they are.

**The file** (JSON lines, UTF-8): a header ``{"format": "dispatch-state", ...}`` with the schema
version; for each table a line ``{"table": name, "columns": [...], "key": [...]}`` followed by its
rows, one JSON array per line in primary-key order (code point order for text, as SQLite's BINARY
and PostgreSQL's ``"C"`` collation sort); last, the manifest ``{"manifest": {table: {"rows": n,
"sha256": hex}}}``. A table's checksum is the SHA-256 of its row lines as written (the canonical
encoding: compact JSON, floats as Python's shortest round-trip form, bytes as ``{"$b64": ...}``). A
file without its manifest (cut short) or whose rows do not match it is refused before anything is
written.

**Export** reads every table in one read transaction (SQLite's snapshot; PostgreSQL's
``REPEATABLE READ``), so a running server may go on writing: the file is the state of one moment
(from PostgreSQL, one table's rows are held in memory at a time: psycopg fetches a result whole).
**Import** writes into a database of this release's schema that holds no row of :data:`TABLES`, in
one transaction, which also brings PostgreSQL's identity sequences (``audit.n``) past the imported
rows and reads every table back to check its count and checksum against the manifest: a mismatch
rolls the whole import back. ``unit_seq`` moves with the instructions, so each unit's next
instruction continues its numbering.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

from utctime import iso_seconds

from .errors import DispatchError
from .stores import schema, stats_days
from .stores.database import Database

FORMAT = "dispatch-state"
FORMAT_VERSION = 1
BATCH_ROWS = 1000  # rows per executemany on import


def _tables(script: str) -> tuple[str, ...]:
    return tuple(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", script))


TABLES = _tables(schema.SCHEMA)  # moved, in the schema's order (a referenced table before its referrers)
RECOMPUTED = _tables(stats_days.SCHEMA)  # statistics' day summaries: summed up again from the moved rows
BOOKKEEPING = frozenset({"sqlite_sequence", "schema_version"})  # each engine's own


class StateTransferError(DispatchError):
    code = "state_transfer_failed"


@dataclass(frozen=True)
class Figures:
    """A table's row count and checksum."""

    rows: int
    sha256: str


def encode_row(row: tuple[Any, ...] | list[Any]) -> str:
    """The canonical line of a row (without its newline)."""
    return json.dumps([{"$b64": base64.b64encode(bytes(v)).decode()} if isinstance(v, (bytes, memoryview)) else v
                       for v in row], ensure_ascii=False, separators=(",", ":"))


def decode_row(line: str) -> list[Any]:
    return [base64.b64decode(v["$b64"]) if isinstance(v, dict) else v for v in json.loads(line)]


# -- what a database holds ---------------------------------------------------------------------------

def _tables_in(conn: Any, engine: str) -> set[str]:
    if engine == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        sql = ("SELECT table_name FROM information_schema.tables "
               "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")
    return {r[0] for r in conn.execute(sql).fetchall() if not r[0].startswith("sqlite_")} - BOOKKEEPING


def _shape(conn: Any, engine: str, table: str) -> tuple[list[str], list[str], set[str]]:
    """``(columns, primary key, text columns)`` of ``table``."""
    if engine == "sqlite":
        info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()  # cid, name, type, notnull, default, pk
        columns = [r[1] for r in info]
        key = [r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
        return columns, key, {r[1] for r in info if "TEXT" in str(r[2]).upper()}
    info = conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
                        (table,)).fetchall()
    key = conn.execute("SELECT a.attname FROM pg_index i "
                       "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                       "WHERE i.indrelid = ?::regclass AND i.indisprimary "
                       "ORDER BY array_position(i.indkey::int2[], a.attnum)", (table,)).fetchall()
    return [r[0] for r in info], [r[0] for r in key], {r[0] for r in info if r[1] in ("text", "character varying")}


def _q(name: str) -> str:
    return f'"{name}"'


def _select(engine: str, table: str, columns: list[str], key: list[str], text: set[str]) -> str:
    """The rows of ``table`` in canonical order: by primary key, text in code point order."""
    order = [_q(c) + (' COLLATE "C"' if engine == "postgresql" and c in text else "") for c in key or columns]
    return f"SELECT {', '.join(map(_q, columns))} FROM {_q(table)} ORDER BY {', '.join(order)}"


def _lines(conn: Any, engine: str, table: str, columns: list[str], key: list[str]) -> Iterator[str]:
    _, _, text = _shape(conn, engine, table)
    for row in conn.execute(_select(engine, table, columns, key, text)):
        yield encode_row(row)


def _check_known(conn: Any, engine: str, where: str) -> None:
    unknown = _tables_in(conn, engine) - set(TABLES) - set(RECOMPUTED)
    if unknown:
        raise StateTransferError(f"{where} has tables this release does not move: {', '.join(sorted(unknown))}")


# -- export ------------------------------------------------------------------------------------------

def export_state(db: Database, target: Path) -> dict[str, Figures]:
    """Write every table of ``db`` into the new file ``target`` (blocking); each table's figures."""
    if target.exists():
        raise StateTransferError(f"{target} exists: export into a new file")
    partial = target.with_name(target.name + ".partial")
    found, _ = db.versions()
    figures: dict[str, Figures] = {}

    def dump(conn: Any, out: IO[str]) -> None:
        conn.execute("BEGIN")  # one snapshot for every table
        try:
            _check_known(conn, db.engine, f"the database {db.path}")
            for table in TABLES:
                columns, key, _ = _shape(conn, db.engine, table)
                out.write(json.dumps({"table": table, "columns": columns, "key": key}) + "\n")
                digest, n = hashlib.sha256(), 0
                for line in _lines(conn, db.engine, table, columns, key):
                    data = line + "\n"
                    out.write(data)
                    digest.update(data.encode())
                    n += 1
                figures[table] = Figures(n, digest.hexdigest())
        finally:
            conn.execute("COMMIT")

    header = {"format": FORMAT, "version": FORMAT_VERSION, "schema_version": found, "engine": db.engine,
              "database": str(db.path), "made_at": iso_seconds(time.time()), "recomputed": list(RECOMPUTED)}
    try:
        with partial.open("w", encoding="utf-8") as out:
            out.write(json.dumps(header, ensure_ascii=False) + "\n")
            db.read(lambda conn: dump(conn, out))
            manifest = {t: {"rows": f.rows, "sha256": f.sha256} for t, f in figures.items()}
            out.write(json.dumps({"manifest": manifest}) + "\n")
            out.flush()
            os.fsync(out.fileno())
        partial.rename(target)
    finally:
        partial.unlink(missing_ok=True)
    return figures


# -- reading a file ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Section:
    table: str
    columns: list[str]
    key: list[str]


def _read(path: Path) -> Iterator[tuple[str, Any]]:
    """``("header", dict)``, then per table ``("table", Section)`` and ``("row", line)``..., then
    ``("manifest", dict)``."""
    with path.open("r", encoding="utf-8") as f:
        first = f.readline()
        try:
            header = json.loads(first)
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise StateTransferError(f"{path} is not an export of dispatch-server export-state")
        if header.get("version") != FORMAT_VERSION:
            raise StateTransferError(f"{path}: format version {header.get('version')}, this release reads "
                                     f"{FORMAT_VERSION}")
        yield "header", header
        for line in f:
            if line.startswith("{"):
                item = json.loads(line)
                if "manifest" in item:
                    yield "manifest", item["manifest"]
                    return
                yield "table", Section(item["table"], item["columns"], item["key"])
            else:
                yield "row", line.rstrip("\n")
    raise StateTransferError(f"{path} ends before its manifest: the export was cut short")


def check_file(path: Path) -> tuple[dict[str, Any], dict[str, Figures]]:
    """The file's header and manifest, once its rows are found to match the manifest (blocking)."""
    header: dict[str, Any] = {}
    found: dict[str, Figures] = {}
    table, digest, n = "", hashlib.sha256(), 0
    for kind, item in _read(path):
        if kind == "header":
            header = item
        elif kind == "row":
            digest.update((item + "\n").encode())
            n += 1
        else:
            if table:
                found[table] = Figures(n, digest.hexdigest())
            if kind == "manifest":
                manifest = {t: Figures(int(v["rows"]), str(v["sha256"])) for t, v in item.items()}
                if manifest != found:
                    bad = sorted(t for t in {*manifest, *found} if manifest.get(t) != found.get(t))
                    raise StateTransferError(f"{path}: the rows of {', '.join(bad)} do not match its manifest")
                return header, manifest
            table, digest, n = item.table, hashlib.sha256(), 0
    raise StateTransferError(f"{path} ends before its manifest")  # pragma: no cover - _read raises first


# -- import ------------------------------------------------------------------------------------------

def _load(conn: Any, engine: str, path: Path, manifest: dict[str, Figures], where: str) -> dict[str, Figures]:
    """Write the file's rows, continue the identity sequences, read back and compare (in the caller's
    transaction)."""
    held = {t: n for t in TABLES if (n := int(conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]))}
    if held:
        raise StateTransferError(f"{where} already holds state ({', '.join(f'{t}: {n} rows' for t, n in held.items())}"
                                 "): import into an empty database")
    if set(manifest) != set(TABLES):
        raise StateTransferError(f"the export holds the tables {', '.join(sorted(manifest))}; this release moves "
                                 f"{', '.join(TABLES)}")
    sections: dict[str, Section] = {}
    sql, batch = "", list[list[Any]]()
    for kind, item in _read(path):
        if kind == "table":
            if batch:
                conn.executemany(sql, batch)
                batch = []
            columns, _, _ = _shape(conn, engine, item.table)
            if set(columns) != set(item.columns):
                raise StateTransferError(f"table {item.table}: the export has the columns {', '.join(item.columns)}, "
                                         f"{where} has {', '.join(columns)}")
            sections[item.table] = item
            sql = (f"INSERT INTO {_q(item.table)} ({', '.join(map(_q, item.columns))}) "
                   f"VALUES ({', '.join('?' * len(item.columns))})")
        elif kind == "row":
            batch.append(decode_row(item))
            if len(batch) >= BATCH_ROWS:
                conn.executemany(sql, batch)
                batch = []
    if batch:
        conn.executemany(sql, batch)
    if engine == "postgresql":  # the next audit row is numbered after the imported ones
        for table, column in conn.execute("SELECT table_name, column_name FROM information_schema.columns "
                                          "WHERE table_schema = current_schema() AND is_identity = 'YES'").fetchall():
            conn.execute(f"SELECT setval(pg_get_serial_sequence(?, ?), "
                         f'(SELECT COALESCE(MAX("{column}"), 0) FROM "{table}") + 1, false)', (table, column))
    read_back = {}
    for table, section in sections.items():
        digest, n = hashlib.sha256(), 0
        for line in _lines(conn, engine, table, section.columns, section.key):
            digest.update((line + "\n").encode())
            n += 1
        read_back[table] = Figures(n, digest.hexdigest())
    bad = sorted(t for t in manifest if read_back.get(t) != manifest[t])
    if bad:
        raise StateTransferError(f"read back from {where}, {', '.join(bad)} differ from the export: nothing imported")
    return read_back


def import_state(db: Database, path: Path) -> dict[str, Figures]:
    """Import the export ``path`` into ``db`` (empty, this release's schema) in one transaction, then
    checked; the figures read back (blocking: not on an event loop)."""
    header, manifest = check_file(path)
    found, _ = db.versions()
    if header["schema_version"] != found:
        raise StateTransferError(
            f"{path} was exported at schema version {header['schema_version']}, {db.path} has version {found}: "
            "export again with this release (it brings the source database to its version first)")
    where = f"the database {db.path}"

    async def write() -> dict[str, Figures]:
        return await db.write(lambda conn: _load(conn, db.engine, path, manifest, where))

    return asyncio.run(write())


def move(source: Database, target: Database, work_dir: Path) -> dict[str, Figures]:
    """``migrate --to``: export ``source`` into a file under ``work_dir``, import it into ``target``
    (checked), remove the file (blocking)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / f"state-{int(time.time() * 1000)}.jsonl"
    try:
        exported = export_state(source, path)
        imported = import_state(target, path)
    finally:
        path.unlink(missing_ok=True)
    if imported != exported:  # pragma: no cover - import_state compares with the file, made from the source
        raise StateTransferError("the state read back differs from the state exported")
    return imported


def move_tracks(source: Path, url: str, chunk: int = 5000) -> tuple[int, int, int]:
    """``migrate --to``: every GPS fix of the SQLite track file ``source`` into the PostgreSQL track
    store at ``url``; ``(units, fixes, already there)``. A fix already in the target (a second run)
    is a duplicate, not an error; each unit's count in the target is checked against the file's."""
    from geo.track import SqliteTrackStore
    from geo.track_postgres import PostgresTrackStore

    if not source.exists():
        return 0, 0, 0
    src = SqliteTrackStore(source)
    try:
        dst = PostgresTrackStore(url)
        try:
            units, fixes, duplicates = 0, 0, 0
            for unit in src.units():
                points = src.query(unit)
                for i in range(0, len(points), chunk):
                    (done,) = dst.insert_batches([points[i:i + chunk]])
                    duplicates += done.duplicates
                stored = len(dst.query(unit, None, None))
                if stored < len(points):
                    raise StateTransferError(f"GPS track of {unit}: {len(points)} fixes in {source}, "
                                             f"{stored} in the target after the move")
                units, fixes = units + 1, fixes + len(points)
            return units, fixes, duplicates
        finally:
            dst.close()
    finally:
        src.close()


def report(figures: dict[str, Figures]) -> list[str]:
    """One line per table: rows and checksum."""
    width = max(map(len, figures), default=0)
    return [f"{t:<{width}}  {f.rows:>8} rows  sha256 {f.sha256}" for t, f in figures.items()]

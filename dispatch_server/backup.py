"""An online backup of a node's durable state: its databases and its keys.

``dispatch-server backup DIR`` copies, while the server keeps running, each SQLite database of the
data directory with SQLite's online backup API (a consistent snapshot, taken page by page under a
read lock, so writers wait only for a step), and the ``keys`` folder (the ledger's signing key, the
party links' secret). It writes ``backup.json``: what was copied, each file's SHA-256 and each
database's row counts per table, checked against the copy itself (``PRAGMA integrity_check``).

With ``[storage] url`` set, the server's state is in PostgreSQL: it is dumped with ``pg_dump``
(:mod:`dispatch_server.backup_postgres`, ``dispatch.pgdump``), and of the SQLite files only the
node's own (GPS tracks, recordings catalog) are copied; a ``dispatch.sqlite3`` left in the data
directory from before a move to PostgreSQL is not the state, and is left out.

To restore SQLite, make ``DIR`` (or a copy of it) the data directory of a fresh node: it serves the
same units, people, actions, instructions, alerts and requests. For PostgreSQL, ``pg_restore
--no-owner -d URL DIR/dispatch.pgdump`` into a fresh, empty database, the rest of ``DIR`` as the
node's data directory, ``[storage] url`` naming the new database (docs/cluster.md). The evidence
archive (recordings and ledger, ``archive.dir``) is files that only grow; copy it with the tools
for files and check it with ``dispatch-audit verify``: the catalog is rebuilt from it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from utctime import iso_seconds

from .errors import DispatchError

DATABASES = ("dispatch.sqlite3", "tracks.sqlite3", "catalog.sqlite3")
PAGES_PER_STEP = 256  # writers wait for at most one step of this many pages


class BackupError(DispatchError):
    code = "backup_failed"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy_database(source: Path, target: Path) -> dict[str, Any]:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30.0)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst, pages=PAGES_PER_STEP)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        check = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"the copy of {source.name} fails its integrity check: {check}")
        tables = [r[0] for r in dst.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        rows = {t: int(dst.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]) for t in tables}
        version = int(dst.execute("PRAGMA user_version").fetchone()[0])
    finally:
        dst.close()
        src.close()
    return {"file": target.name, "engine": "sqlite", "rows": rows, "schema_version": version,
            "sha256": sha256_of(target)}


def backup(data_dir: Path, target: Path, url: str = "") -> dict[str, Any]:
    """Copy the node's databases and keys into ``target`` (a new or empty folder); the manifest.
    ``url``: the server's PostgreSQL database (``[storage] url``), dumped with ``pg_dump``."""
    if target.resolve() == data_dir.resolve():
        raise BackupError("the backup folder must not be the data directory")
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} is not empty: back up into a new folder")
    if not url and not (data_dir / "dispatch.sqlite3").exists():
        raise BackupError(f"no database in {data_dir}: nothing to back up")
    target.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    manifest: dict[str, Any] = {"made_at": iso_seconds(time.time()), "data_dir": str(data_dir),
                                "databases": [], "keys": []}
    if url:
        from .backup_postgres import DUMP_FILE, dump

        manifest["databases"].append(dump(url, target / DUMP_FILE))
    for name in DATABASES:
        if url:  # the server database, the tracks and the catalog all live in PostgreSQL: in the dump
            break
        if (data_dir / name).exists():
            manifest["databases"].append(_copy_database(data_dir / name, target / name))
    keys = data_dir / "keys"
    if keys.is_dir():
        shutil.copytree(keys, target / "keys")
        for path in sorted(p for p in (target / "keys").rglob("*") if p.is_file()):
            path.chmod(0o600)
            manifest["keys"].append({"file": str(path.relative_to(target)), "sha256": sha256_of(path)})
    manifest["seconds"] = round(time.monotonic() - t0, 3)
    (target / "backup.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return manifest

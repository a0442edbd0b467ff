"""The PostgreSQL database in ``dispatch-server backup`` (``[storage] url`` set): ``pg_dump``.

The dump is PostgreSQL's custom format (``pg_dump -Fc --no-owner``: compressed, restored with
``pg_restore`` into a fresh database by any role). Its row counts are read **in the snapshot the
dump is taken of**: this module opens a ``REPEATABLE READ`` transaction, exports its snapshot
(``pg_export_snapshot()``), counts every table in it, and runs ``pg_dump --snapshot`` on that
snapshot while the transaction stays open, so ``backup.json`` says exactly what the dump holds even
while nodes keep writing. The dump is then listed by ``pg_restore --list`` (it can be read back).

The password of the URL goes to ``pg_dump`` in its environment (``PGPASSWORD``), never on its
command line where other users of the host could read it.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sqlcompat import display

from .backup import BackupError, sha256_of

DUMP_FILE = "dispatch.pgdump"
TIMEOUT_S = 3600.0  # a dump that takes longer than this is stopped


def pg_binary(name: str) -> str:
    """``pg_dump``/``pg_restore`` on PATH, else the newest of Debian's ``/usr/lib/postgresql/<v>/bin``."""
    found = shutil.which(name)
    if found:
        return found
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    if not candidates:
        raise BackupError(f"{name} is not installed (Debian: apt-get install postgresql-client)")
    return max(candidates, key=lambda p: [int(x) for x in re.findall(r"\d+", Path(p).parent.parent.name)] or [0])


def _client(url: str) -> tuple[str, dict[str, str]]:
    """The connection string without the password, and the environment that carries it."""
    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **{k: str(v) for k, v in params.items()}), env


def dump(url: str, target: Path) -> dict[str, Any]:
    """``pg_dump`` of the database at ``url`` into the new file ``target``; its manifest entry."""
    pg_dump = pg_binary("pg_dump")
    conninfo, env = _client(url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
            tables = [r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
                "AND table_type = 'BASE TABLE' ORDER BY table_name")]
            rows = {t: int(conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0])  # type: ignore[index]
                    for t in tables}
            version = 0
            if "schema_version" in tables:
                found = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
                version = int(found[0]) if found and found[0] is not None else 0
            made = subprocess.run([pg_dump, "--format=custom", "--no-owner", f"--snapshot={snapshot}",
                                   f"--file={target}", f"--dbname={conninfo}"],
                                  env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
            conn.execute("COMMIT")
    except psycopg.Error as exc:
        raise BackupError(f"PostgreSQL at {display(url)}: {exc}") from exc
    except subprocess.TimeoutExpired:
        raise BackupError(f"pg_dump of {display(url)} took more than {TIMEOUT_S:.0f} s: stopped") from None
    if made.returncode != 0:
        raise BackupError(f"pg_dump of {display(url)} failed ({made.returncode}): {made.stderr.strip()[-2000:]}")
    listed = subprocess.run([pg_binary("pg_restore"), "--list", str(target)], capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    if listed.returncode != 0:
        raise BackupError(f"the dump {target.name} cannot be read back: {listed.stderr.strip()[-2000:]}")
    version_line = subprocess.run([pg_dump, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    return {"file": target.name, "engine": "postgresql", "database": display(url), "format": "pg_dump custom",
            "pg_dump": version_line, "rows": rows, "rows_read": "in the snapshot of the dump (pg_dump --snapshot)",
            "schema_version": version, "sha256": sha256_of(target)}

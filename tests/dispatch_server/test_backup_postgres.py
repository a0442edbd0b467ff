"""``dispatch-server backup`` of a node on PostgreSQL: ``pg_dump`` of the running database, whose
row counts are read in the dump's own snapshot; restored with ``pg_restore`` into a fresh database,
a fresh node serves the state as it was when the backup ran."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from dispatch_server.app import create_app
from tests.conftest import OPERATOR_PASSWORD, LiveServer, settings_for
from tests.dispatch_server.test_actions import api
from tests.dispatch_server.test_state_transfer import config_for, run
from tests.support.postgres_server import PostgresServer, binary

CASE = "（2026）冀0916执31号"


def pg_restore(dump: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("pg_restore"), "--no-owner", "--exit-on-error", f"--dbname={url}", str(dump)],
                          capture_output=True, text=True, timeout=300)


class Writer(threading.Thread):
    """Rows written one by one, each in its own transaction, until stopped: another node at work."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.written = url, threading.Event(), 0

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                conn.execute("INSERT INTO party_failures(key, failures, locked_until, last_at) VALUES (%s, 1, 0, %s)",
                             (f"writer-{self.written}", time.time()))
                self.written += 1


def counts(url: str, tables: list[str]) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {t: int(conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]) for t in tables}  # type: ignore[index]


async def test_a_dump_of_a_running_node_restored_into_a_fresh_database_is_served(
        make_live: Any, guarded_server: Any, http: aiohttp.ClientSession, tmp_path: Path,
        postgres_server: PostgresServer, postgres_url: str) -> None:
    live: LiveServer = await make_live(storage={"url": postgres_url})
    live.add_unit("bc-01")
    live.add_user("op", "operator")
    op = await live.login("op")
    _, action = await api(http, "POST", f"{live.url}/api/actions", op,
                          {"case_number": CASE, "title": "备份前的查封", "type": "seizure", "units": ["bc-01"]})
    status, before = await api(http, "POST", f"{live.url}/api/instructions", op,
                               {"unit": "bc-01", "type": "text", "text": "备份前", "ttl_s": 3600})
    assert status == 201
    (live.settings.data_dir / "dispatch.sqlite3").write_bytes(b"")  # a file left from before a move: not the state

    config = config_for(tmp_path / "node.toml", live.settings.data_dir, postgres_url)
    folder = tmp_path / "backup"
    writer = Writer(postgres_url)
    writer.start()
    try:
        out = await asyncio.to_thread(run, config, "backup", str(folder))  # the server keeps running, rows arrive
    finally:
        writer.stop.set()
        await asyncio.to_thread(writer.join, 30)
    assert out.returncode == 0, out
    assert "dispatch.pgdump:" in out.stdout and "manifest" in out.stdout
    manifest = json.loads((folder / "backup.json").read_text(encoding="utf-8"))
    files = {d["file"]: d for d in manifest["databases"]}
    assert set(files) == {"dispatch.pgdump"}, "the server database, the tracks and the catalog are in the dump"
    dumped = files["dispatch.pgdump"]
    assert dumped["engine"] == "postgresql" and dumped["schema_version"] >= 2 and "snapshot" in dumped["rows_read"]
    assert dumped["rows"]["instructions"] == 1 and dumped["rows"]["actions"] == 1 and dumped["rows"]["users"] == 1
    for entry in [*manifest["databases"], *manifest["keys"]]:
        assert hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest() == entry["sha256"], entry["file"]
    assert any(k["file"].endswith("link-secret") for k in manifest["keys"])

    status, after = await api(http, "POST", f"{live.url}/api/instructions", op,
                              {"unit": "bc-01", "type": "text", "text": "备份后", "ttl_s": 3600})
    assert status == 201

    fresh = postgres_server.fresh_database()
    restored = await asyncio.to_thread(pg_restore, folder / "dispatch.pgdump", fresh)
    assert restored.returncode == 0 and restored.stderr == "", restored.stderr
    assert counts(fresh, list(dumped["rows"])) == dumped["rows"], "the counts are those of the dump's snapshot"
    assert 0 < dumped["rows"]["party_failures"] < writer.written, "rows written while the dump ran, and after"
    data = tmp_path / "restored" / "data"
    shutil.copytree(folder, data, ignore=shutil.ignore_patterns("dispatch.pgdump", "backup.json"))
    node = create_app(settings_for(tmp_path / "restored", storage={"url": fresh}, archive={"enabled": False}))
    server = await guarded_server(node)
    url = str(server.make_url("")).rstrip("/")
    async with http.post(f"{url}/api/login", json={"username": "op", "password": OPERATOR_PASSWORD}) as r:
        assert r.status == 200, await r.text()
        token = (await r.json())["token"]
    status, actions = await api(http, "GET", f"{url}/api/actions", token)
    assert status == 200 and [a["id"] for a in actions["actions"]] == [action["id"]]
    status, found = await api(http, "GET", f"{url}/api/instructions?unit=bc-01", token)
    ids = {i["id"] for i in found["instructions"]}
    assert before["id"] in ids and after["id"] not in ids, "the state as it was when the backup ran"
    status, again = await api(http, "POST", f"{url}/api/instructions", token,
                              {"unit": "bc-01", "type": "text", "text": "恢复后", "ttl_s": 3600})
    assert status == 201, "the restored database takes new rows (sequences restored with it)"

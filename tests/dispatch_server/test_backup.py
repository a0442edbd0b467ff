"""``dispatch-server backup``: an online copy of a running node's databases and keys, which a
fresh node then serves as its own data directory."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp

from dispatch_server.app import create_app
from tests.conftest import OPERATOR_PASSWORD, LiveServer, settings_for
from tests.dispatch_server.test_actions import api
from tests.support.server import cli, write_config

CASE = "（2026）冀0916执31号"


async def test_a_backup_of_a_running_node_is_served_by_a_fresh_node(
        make_live: Any, guarded_server: Any, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    live: LiveServer = await make_live()
    live.add_unit("bc-01")
    live.add_user("op", "operator")
    op = await live.login("op")
    _, action = await api(http, "POST", f"{live.url}/api/actions", op,
                          {"case_number": CASE, "title": "备份前的查封", "type": "seizure", "units": ["bc-01"]})
    status, before = await api(http, "POST", f"{live.url}/api/instructions", op,
                               {"unit": "bc-01", "type": "text", "text": "备份前", "ttl_s": 3600})
    assert status == 201

    config = write_config(tmp_path / "node.toml", live.settings.data_dir)
    folder = tmp_path / "backup"
    out = cli(config, "backup", str(folder))  # the server keeps running
    assert out.returncode == 0, out.stderr
    assert "dispatch.sqlite3:" in out.stdout and "manifest" in out.stdout
    manifest = json.loads((folder / "backup.json").read_text(encoding="utf-8"))
    files = {d["file"]: d for d in manifest["databases"]}
    assert {"dispatch.sqlite3", "tracks.sqlite3"} <= set(files)
    assert files["dispatch.sqlite3"]["rows"]["instructions"] == 1 and files["dispatch.sqlite3"]["rows"]["actions"] == 1
    for entry in [*manifest["databases"], *manifest["keys"]]:
        assert hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest() == entry["sha256"], entry["file"]
    assert any(k["file"].endswith("link-secret") for k in manifest["keys"])
    assert not list(folder.glob("*-wal")), "each database one self-contained file"

    status, after = await api(http, "POST", f"{live.url}/api/instructions", op,
                              {"unit": "bc-01", "type": "text", "text": "备份后", "ttl_s": 3600})
    assert status == 201

    restored = tmp_path / "restored"
    shutil.copytree(folder, restored / "data")
    node = create_app(settings_for(restored, archive={"enabled": False}))
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

    again = cli(config, "backup", str(folder))
    assert again.returncode == 2 and "not empty" in again.stderr, again

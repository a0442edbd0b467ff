"""Exactly-once delivery across process deaths: real `field-client` and `dispatch-server`
processes killed with SIGKILL, as in the field."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import LiveServer
from tests.dispatch_server.test_actions import api
from tests.support.processes import Process, assert_clean
from tests.support.server import REPO, ServerProcess, add_unit, add_user, login, write_config
from tests.support.unit_client import Console


async def field_client(url: str, unit: str, token: str, applied: Path, *extra: str) -> Process:
    """An unattended vehicle terminal (``--auto-ack``): it acknowledges each instruction it applies."""
    return await Process.start("-m", "field_client", "--server", url, "--unit", unit, "--token", token,
                               "--applied-log", str(applied), "--video", "none", "--audio", "none", "--gps", "none",
                               "--auto-ack", *extra)


def applied_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


async def wait_states(console: Console, ids: list[str], state: str, timeout: float) -> None:
    want = set(ids)
    deadline = time.monotonic() + timeout
    while want:
        update = await console.next("instruction_update", timeout=max(0.1, deadline - time.monotonic()))
        if update["state"] == state:
            want.discard(update["id"])


@pytest.mark.timeout(150)
async def test_field_client_killed_while_instructions_flow_applies_each_exactly_once(
    live: LiveServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    applied = tmp_path / "applied.jsonl"
    client = await field_client(live.url, "bc-01", token, applied)
    ids: list[str] = []

    async def send(n: int) -> None:
        status, body = await api(http, "POST", f"{live.url}/api/instructions", op,
                                 {"unit": "bc-01", "type": "text", "text": f"指令 {n}", "ttl_s": 600})
        assert status == 201, body
        ids.append(body["id"])

    try:
        for n in range(15):
            await send(n)
            await asyncio.sleep(0.1)  # instructions trickle in while the unit works
        await client.stop(signal.SIGKILL)  # mid-stream
        for n in range(15, 30):
            await send(n)
        await asyncio.sleep(30)  # the unit stays dead for 30 s
        client = await field_client(live.url, "bc-01", token, applied)
        await wait_states(console, ids, "acknowledged", timeout=60)
        lines = applied_lines(applied)
        assert [line["id"] for line in lines] == ids, "every instruction applied exactly once, in order"
        assert [line["seq"] for line in lines] == list(range(1, 31))
        for iid in ids:
            status, ins = await api(http, "GET", f"{live.url}/api/instructions/{iid}", op)
            assert ins["state"] == "acknowledged" and ins["delivered_at"] and ins["acknowledged_at"]
    finally:
        await client.stop()
        await console.close()


@pytest.mark.timeout(150)
async def test_server_killed_with_200_queued_instructions_loses_none(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    cfg = write_config(tmp_path / "config.toml", tmp_path / "data")
    token = add_unit(cfg, "veh-01", "vehicle")
    add_user(cfg, "op", "operator", "operator-pass-1")
    server = ServerProcess(cfg).start()
    applied = tmp_path / "applied.jsonl"
    client: Process | None = None
    try:
        op = await login(server.url, "op", "operator-pass-1")
        ids = []
        for n in range(200):
            status, body = await api(http, "POST", f"{server.url}/api/instructions", op,
                                     {"unit": "veh-01", "type": "text", "text": f"#{n}", "ttl_s": 600})
            assert status == 201
            ids.append(body["id"])
        server.kill(signal.SIGKILL)
        server = ServerProcess(cfg).start()
        op = await login(server.url, "op", "operator-pass-1")
        client = await field_client(server.url, "veh-01", token, applied)
        deadline = time.monotonic() + 60
        while len(applied_lines(applied)) < 200:
            assert time.monotonic() < deadline, f"only {len(applied_lines(applied))} of 200 applied"
            await asyncio.sleep(0.2)
        lines = applied_lines(applied)
        assert [line["id"] for line in lines] == ids
        async with http.get(f"{server.url}/api/instructions?unit=veh-01&limit=1000",
                            headers={"Authorization": f"Bearer {op}"}) as r:
            listed = (await r.json())["instructions"]
        assert len(listed) == 200
        deadline = time.monotonic() + 30
        while any(i["state"] != "acknowledged" for i in listed):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
            async with http.get(f"{server.url}/api/instructions?unit=veh-01&limit=1000",
                                headers={"Authorization": f"Bearer {op}"}) as r:
                listed = (await r.json())["instructions"]
    finally:
        if client is not None:
            await client.stop()
        server.stop()


async def test_field_client_sos_command(live: LiveServer, tmp_path: Path) -> None:
    token = live.add_unit("bc-02")
    live.add_user("op", "operator")
    console = await Console(live.url, await live.login("op")).connect()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "field_client", "--server", live.url, "--unit", "bc-02", "--token", token,
        "--gps", "sim:38.04,114.51,50", "--sos", "需要支援", cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert_clean(out.decode() + err.decode(), "field-client --sos")
    alert_id = out.decode().strip().splitlines()[-1]
    alert = await console.next("alert", lambda a: a["kind"] == "sos")
    assert alert["id"] == alert_id and "需要支援" in alert["message"]
    assert abs(alert["position"]["lat"] - 38.04) < 0.01
    await console.close()

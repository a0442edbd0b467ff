"""`kill -9` of the server while a unit publishes: after the restart (same address) the unit
reconnects and publishes again by itself, and operators see it live again."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from tests.support.processes import Process
from tests.support.redis_server import free_port
from tests.support.server import ServerProcess, add_unit, add_user, login, write_config


async def unit_state(http: aiohttp.ClientSession, url: str, token: str, unit: str) -> dict[str, object] | None:
    try:
        async with http.get(f"{url}/api/units", headers={"Authorization": f"Bearer {token}"}) as r:
            if r.status != 200:
                return None
            units: list[dict[str, object]] = (await r.json())["units"]
            return next(u for u in units if u["id"] == unit)
    except aiohttp.ClientError:
        return None


async def wait_publishing(http: aiohttp.ClientSession, url: str, op: str, unit: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = await unit_state(http, url, op, unit)
        if state and state["publishing"]:
            return
        assert time.monotonic() < deadline, f"{unit} did not publish within {timeout} s (last state {state})"
        await asyncio.sleep(0.25)  # polling a separate process's HTTP API


@pytest.mark.timeout(120)
async def test_unit_comes_back_after_the_server_is_killed(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    cfg = write_config(tmp_path / "config.toml", tmp_path / "data")
    cfg.write_text(cfg.read_text().replace("port = 0", f"port = {free_port()}"))
    token = add_unit(cfg, "veh-05", "vehicle")
    add_user(cfg, "op", "operator", "operator-pass-1")
    server = ServerProcess(cfg).start()
    client = await Process.start("-m", "field_client", "--server", server.url, "--unit", "veh-05", "--token", token,
                                 "--size", "320x240", "--gps", "none")
    try:
        op = await login(server.url, "op", "operator-pass-1")
        await wait_publishing(http, server.url, op, "veh-05", 60)
        server.kill(signal.SIGKILL)
        server = ServerProcess(cfg).start()
        op = await login(server.url, "op", "operator-pass-1")
        state = await unit_state(http, server.url, op, "veh-05")
        assert state is not None  # the restarted server knows the unit (its presence starts clean)
        await wait_publishing(http, server.url, op, "veh-05", 60)
        assert client.proc.returncode is None, "the field client must survive the server's crash"
    finally:
        await client.stop()
        server.stop()

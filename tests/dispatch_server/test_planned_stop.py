"""A planned stop (SIGTERM) with 20 publishing units and 5 consoles (issue #15, finding 4): it
finishes within ``shutdown_grace_s``, seals every file, closes every recording with the cause
``server_stopped`` (not ``server_fault``), signs a final tree head, tells units and consoles the
server is restarting and raises no offline alert; units come back by themselves. ``kill -9``
still leaves ``server_fault``."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from dispatch_server.auth import hash_token, new_token
from dispatch_server.config import load_settings
from dispatch_server.stores.accounts import Accounts
from dispatch_server.stores.database import SqliteDatabase
from recordings.ledger import PUBLIC_KEY_FILE
from recordings.verify import verify_archive
from tests.field_client.console_watch import ConsoleWatch, publishing
from tests.recordings.archive_support import entries
from tests.support.processes import Process
from tests.support.redis_server import free_port
from tests.support.server import ServerProcess, add_user, login, write_config

UNITS = [f"sim-{i:02d}" for i in range(1, 21)]
GRACE_S = 5.0
PASSWORD = "operator-pass-1"


class Console:
    """A ``/console`` connection that records the server's ``server_restarting`` notice."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        self.restarting = asyncio.Event()
        self.notice: dict[str, Any] = {}
        self.sio.on("server_restarting", self._restarting, namespace="/console")

    async def _restarting(self, data: dict[str, Any]) -> None:
        self.notice = data
        self.restarting.set()

    async def connect(self, url: str, token: str) -> None:
        await self.sio.connect(url, auth={"token": token}, namespaces=["/console"], transports=["websocket"],
                               wait_timeout=10)


def register_units(cfg: Path, tokens: Path) -> None:
    settings = load_settings(cfg, env={})
    db = SqliteDatabase(settings.data_dir)
    lines = []
    try:
        accounts = Accounts(db)
        for unit in UNITS:
            token = new_token()
            accounts.add_unit(unit, "vehicle", hash_token(token), time.time())
            lines.append(f"{unit} {token}")
    finally:
        db.close()
    tokens.write_text("\n".join(lines) + "\n")


async def start_action(http: aiohttp.ClientSession, url: str, op: str) -> str:
    headers = {"Authorization": f"Bearer {op}"}
    async with http.post(f"{url}/api/actions", headers=headers, json={
            "case_number": "(2026)冀0916执123号", "title": "腾退", "type": "eviction", "units": UNITS}) as r:
        assert r.status == 201, await r.text()
        aid = str((await r.json())["id"])
    async with http.post(f"{url}/api/actions/{aid}/start", headers=headers) as r:
        assert r.status == 200, await r.text()
    return aid


async def alerts(http: aiohttp.ClientSession, url: str, op: str) -> list[dict[str, Any]]:
    async with http.get(f"{url}/api/alerts", headers={"Authorization": f"Bearer {op}"}) as r:
        return list((await r.json())["alerts"])


async def all_publishing(url: str, op: str) -> ConsoleWatch:
    watch = ConsoleWatch()
    await watch.connect(url, op)
    for unit in UNITS:
        await watch.until(unit, publishing, timeout=90)
    return watch


@pytest.mark.timeout(300)
async def test_a_planned_stop_with_20_units_and_5_consoles_is_clean(tmp_path: Path,
                                                                   http: aiohttp.ClientSession) -> None:
    cfg = write_config(tmp_path / "config.toml", tmp_path / "data",
                       "[archive]\nsegment_s = 2.0\nreconnect_grace_s = 30.0\n")
    cfg.write_text(cfg.read_text().replace("port = 0", f"port = {free_port()}")
                   .replace("shutdown_grace_s = 3.0", f"shutdown_grace_s = {GRACE_S}"))
    tokens = tmp_path / "tokens.txt"
    register_units(cfg, tokens)
    add_user(cfg, "op", "operator", PASSWORD)
    server = ServerProcess(cfg).start()
    fleet = await Process.start("-m", "field_client", "--server", server.url, "--fleet", str(len(UNITS)),
                                "--token-file", str(tokens), "--size", "320x240", "--fps", "15", "--gps", "none")
    archive = tmp_path / "data" / "archive"
    consoles: list[Console] = []
    try:
        op = await login(server.url, "op", PASSWORD)
        await start_action(http, server.url, op)
        watch = await all_publishing(server.url, op)
        await watch.close()
        for _ in range(5):
            console = Console()
            await console.connect(server.url, op)
            consoles.append(console)
        before = {a["id"] for a in await alerts(http, server.url, op)}

        assert server.proc is not None
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        for console in consoles:
            async with asyncio.timeout(GRACE_S):
                await console.restarting.wait()
        assert consoles[0].notice.get("reason") == "server_stopped"
        await asyncio.to_thread(server.proc.wait, 30)
        took = time.monotonic() - t0
        server.stop()
        assert took < GRACE_S + 1.0, f"the stop took {took:.1f} s"
        assert "exiting anyway" not in server.output()
        assert server.proc.returncode == 0

        # Every file sealed, every recording closed as stopped, a final tree head over everything.
        assert not list(archive.rglob("*.part"))
        ledger = entries(archive)
        opened = {e["data"]["recording_id"] for e in ledger if e["type"] == "recording_opened"}
        closed = {e["data"]["recording_id"]: e for e in ledger if e["type"] == "recording_closed"}
        assert opened and set(closed) == opened
        assert {e["data"].get("end_cause") for e in closed.values()} == {"server_stopped"}
        assert not [e for e in ledger if e["type"] == "gap" and e["data"]["cause"] == "server_fault"]
        pem = (archive / PUBLIC_KEY_FILE).read_bytes()
        report = verify_archive(archive, pem)
        assert report.failures == [] and report.tree_size == report.entries

        # The units come back by themselves; no offline alert was raised by the stop.
        server = ServerProcess(cfg).start()
        op = await login(server.url, "op", PASSWORD)
        watch = await all_publishing(server.url, op)
        await watch.close()
        raised = [a for a in await alerts(http, server.url, op) if a["id"] not in before]
        assert not [a for a in raised if a["kind"] in ("unit_offline", "stopped_publishing")], raised
        assert "closed by recovery" not in server.output()

        # kill -9 still is a fault: recovery closes what it left open as server_fault.
        server.kill(signal.SIGKILL)
        server = ServerProcess(cfg).start()
        ledger = entries(archive)
        faults = [e for e in ledger if e["type"] == "gap" and e["data"]["cause"] == "server_fault"]
        assert faults and all(e["outcome"] == "recovered" for e in faults)
    finally:
        for console in consoles:
            await console.sio.disconnect()
        await fleet.stop()
        server.stop()

"""``dispatch-audit verify`` on a running server's archive (issue #15, finding 5): entries awaiting
the next tree head are pending, segments being written are in progress, and ``--fresh`` asks the
server to sign first; nothing of that is a failure."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from recordings.ledger import PUBLIC_KEY_FILE
from tests.dispatch_server.test_server_crash import wait_publishing
from tests.recordings.archive_support import of_type
from tests.support.processes import Process, clean_env
from tests.support.server import ServerProcess, add_unit, add_user, login, wait_until, write_config

AUDIT = str(Path(sys.executable).parent / "dispatch-audit")


async def audit(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [AUDIT, *args], capture_output=True, text=True, timeout=120,
                                   env=clean_env(**env))


@pytest.mark.timeout(120)
async def test_verify_passes_on_a_running_server_and_fresh_signs_first(tmp_path: Path,
                                                                       http: aiohttp.ClientSession) -> None:
    cfg = write_config(tmp_path / "config.toml", tmp_path / "data",
                       "[archive]\nsegment_s = 1.0\nsign_interval_s = 30.0\n")
    token = add_unit(cfg, "bc-07")
    add_user(cfg, "root", "admin", "admin-pass-123")
    server = ServerProcess(cfg).start()
    client = await Process.start("-m", "field_client", "--server", server.url, "--unit", "bc-07", "--token", token,
                                 "--size", "320x240", "--gps", "none")
    archive = tmp_path / "data" / "archive"
    try:
        admin = await login(server.url, "root", "admin-pass-123")
        await wait_publishing(http, server.url, admin, "bc-07", 60)
        assert await asyncio.to_thread(wait_until, lambda: len(of_type(archive, "segment_sealed")) >= 2, 30)
        pem = tmp_path / "court.pem"
        shutil.copy(archive / PUBLIC_KEY_FILE, pem)

        live = await audit("verify", "--config", str(cfg), "--public-key", str(pem))
        assert live.returncode == 0, live.stdout
        assert "FAIL" not in live.stdout and "live archive" in live.stdout
        assert "WARN pending" in live.stdout and "WARN in_progress" in live.stdout
        assert "not covered by the latest signed tree head" not in live.stdout

        refused = await audit("verify", "--config", str(cfg), "--public-key", str(pem), "--fresh", "--server",
                              server.url, "--token", "nope")
        assert refused.returncode == 2 and "401" in refused.stderr
        fresh = await audit("verify", "--config", str(cfg), "--public-key", str(pem), "--fresh", "--server",
                            server.url, DISPATCH_AUDIT_TOKEN=admin)
        assert fresh.returncode == 0, fresh.stdout + fresh.stderr
        assert "the server signed a tree head" in fresh.stderr
    finally:
        await client.stop()
        server.stop()
    stopped = await audit("verify", "--config", str(cfg), "--public-key", str(pem))
    assert stopped.returncode == 0 and "live archive" not in stopped.stdout
    assert "WARN pending" not in stopped.stdout and "in_progress" not in stopped.stdout

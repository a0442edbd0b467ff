"""Issue #15, finding 1, end to end: a forged and re-chained ledger is refused by the server at
start-up (no tree head is signed over it, nothing is appended), operators and admins are alarmed,
and the forgery that a pinned-key ``dispatch-audit verify`` alone cannot see is caught."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp

from dispatch_server.config import load_settings
from recordings.ledger import ENTRIES_FILE, PUBLIC_KEY_FILE, STH_FILE, Ledger
from tests.recordings.test_ledger_startup import drop_heads_from, forge_entry
from tests.support.server import ServerProcess, add_user, login, write_config

AUDIT = str(Path(sys.executable).parent / "dispatch-audit")
ADMIN_PASSWORD = "admin-pass-123"


def audit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AUDIT, *args], capture_output=True, text=True, timeout=120)


def add_history(cfg: Path, downloads_at: int) -> None:
    """Evidence history as a running server would have written it (the server is stopped)."""
    settings = load_settings(cfg, env={})
    led = Ledger(settings.archive_dir, settings.signing_key_path, where="recorder@test",
                 checkpoint_path=settings.checkpoint_path)
    led.open()
    while led.size < downloads_at + 20:
        if led.size == downloads_at:
            led.append("downloaded", actor="party:张三@(2026)冀0916执123号", where="http:10.0.0.9",
                       data={"request_id": "fr-0123456789ab", "link_id": "ln-0123456789ab", "what": "package",
                             "range": ""})
        else:
            led.append("viewed", actor="user:ana", where="http:10.0.0.7", data={"recording_id": f"rec-{led.size}"})
        if led.size % 4 == 0:
            led.sign_tree_head()
    led.close()


async def test_the_server_refuses_to_sign_a_forged_rechained_ledger(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", tmp_path / "data")
    add_user(cfg, "root", "admin", ADMIN_PASSWORD)
    server = ServerProcess(cfg).start()
    server.stop()
    archive = tmp_path / "data" / "archive"
    add_history(cfg, downloads_at=27)
    kept = tmp_path / "auditor-sth.jsonl"  # a tree head copy someone kept (auditor, party, witness)
    shutil.copy(archive / STH_FILE, kept)

    forge_entry(archive, 27, "party:李四@(2026)冀0916执123号")
    drop_heads_from(archive, 28)
    forged = {p: (archive / p).read_bytes() for p in (ENTRIES_FILE, STH_FILE)}
    pem = tmp_path / "court.pem"
    shutil.copy(archive / PUBLIC_KEY_FILE, pem)
    alone = audit("verify", "--archive", str(archive), "--public-key", str(pem))
    # Self-consistent: only the entries no head covers any more stand out, until a server signs them.
    assert [line.split(" ")[1] for line in alone.stdout.splitlines() if line.startswith("FAIL ")] == ["uncovered"]

    server = ServerProcess(cfg).start()
    try:
        token = await login(server.url, "root", ADMIN_PASSWORD)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            async with http.get(f"{server.url}/api/alerts") as r:
                alerts = (await r.json())["alerts"]
            async with http.get(f"{server.url}/api/health") as r:
                health = await r.json()
    finally:
        server.stop()
    alarm = [a for a in alerts if a["kind"] == "ledger_integrity"]
    assert alarm and "tree heads were removed or altered" in alarm[0]["message"]
    assert health["archive"]["integrity"]["ok"] is False
    assert any("history was rewritten" in p for p in health["archive"]["integrity"]["problems"])
    assert "failed its start-up check" in server.output()
    assert {p: (archive / p).read_bytes() for p in forged} == forged  # not signed over, nothing appended
    again = audit("verify", "--archive", str(archive), "--public-key", str(pem))
    assert again.returncode == 1 and "uncovered entries 24..46" in again.stdout

    caught = audit("verify", "--archive", str(archive), "--public-key", str(pem), "--known-head", str(kept))
    assert caught.returncode == 1, caught.stdout
    assert "FAIL inconsistent known head" in caught.stdout


async def issue_codes(url: str, token: str, n: int) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        for i in range(n):
            async with http.post(f"{url}/api/party/codes", json={"case_number": "（2026）冀0916执123号",
                                                                  "party_name": f"当事人{i}"}) as r:
                assert r.status == 201, await r.text()


async def test_finding_2_a_rollback_is_caught_by_checkpoint_witness_and_verify(tmp_path: Path) -> None:
    witness = tmp_path / "witness"
    witness.mkdir()
    cfg = write_config(tmp_path / "config.toml", tmp_path / "data",
                       f'[archive]\nwitnesses = ["{witness}"]\nsign_interval_s = 1.0\n')
    add_user(cfg, "root", "admin", ADMIN_PASSWORD)
    archive = tmp_path / "data" / "archive"
    for _ in range(2):
        server = ServerProcess(cfg).start()
        try:
            await issue_codes(server.url, await login(server.url, "root", ADMIN_PASSWORD), 3)
        finally:
            server.stop()
        if not (tmp_path / "early").exists():
            shutil.copytree(archive / "ledger", tmp_path / "early")  # the state to roll back to
    pem = tmp_path / "court.pem"
    shutil.copy(archive / PUBLIC_KEY_FILE, pem)
    held = [json.loads(line) for line in (witness / "heads.jsonl").read_text().splitlines()]
    assert held[-1] == json.loads((archive / STH_FILE).read_text().splitlines()[-1])

    for name in ("entries.jsonl", "sth.jsonl"):
        shutil.copy(tmp_path / "early" / name, archive / "ledger" / name)
    plain = audit("verify", "--archive", str(archive), "--public-key", str(pem))
    assert plain.returncode == 0, plain.stdout  # the rolled-back archive is consistent in itself

    checkpoint = load_settings(cfg, env={}).checkpoint_path
    for remove_checkpoint in (False, True):
        if remove_checkpoint:
            checkpoint.unlink()  # the witness still remembers
        server = ServerProcess(cfg).start()
        server.stop()
        assert "failed its start-up check" in server.output()
        assert ("witness" if remove_checkpoint else "entries were removed") in server.output()

    by_witness = audit("verify", "--archive", str(archive), "--public-key", str(pem), "--known-head", str(witness))
    assert by_witness.returncode == 1 and "FAIL rolled_back known head" in by_witness.stdout
    by_config = audit("verify", "--config", str(cfg), "--public-key", str(pem))
    assert by_config.returncode == 1 and "FAIL rolled_back known head" in by_config.stdout

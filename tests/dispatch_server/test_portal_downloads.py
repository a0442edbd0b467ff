"""The portal offers parties the second verifier and the court's public key (issue #15, finding 9)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp

from dispatch_server.appkeys import ARCHIVE
from recordings.ledger import key_id, load_public_key
from tests.conftest import LiveServer

REPO = Path(__file__).resolve().parents[2]


async def test_the_portal_offers_the_verifier_and_the_court_key(live: LiveServer, http: aiohttp.ClientSession,
                                                                tmp_path: Path) -> None:
    async with http.get(f"{live.url}/portal/dispatch_verify.py") as r:
        assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
        script = await r.read()
    assert script == (REPO / "verifier" / "dispatch_verify.py").read_bytes()
    async with http.get(f"{live.url}/portal/court-public-key.pem") as r:
        assert r.status == 200
        pem = await r.read()
    assert pem == live.app[ARCHIVE].ledger.public_key_pem()
    assert r.headers["X-Key-Id"] == key_id(load_public_key(pem))
    async with http.get(f"{live.url}/portal") as r:
        page = await r.text()
    assert "/portal/dispatch_verify.py" in page and "/portal/court-public-key.pem" in page
    saved = tmp_path / "dispatch_verify.py"
    saved.write_bytes(script)
    usage = await asyncio.to_thread(subprocess.run, [sys.executable, "-S", "-I", str(saved), "--help"],
                                    capture_output=True, text=True, timeout=30)
    assert usage.returncode == 0 and "package" in usage.stdout

"""A `field-client` process killed with SIGKILL and started again: the operator's tile goes
offline in place and comes back live by itself, on the same tile, without anyone clicking."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import OPERATOR_PASSWORD, LiveServer
from tests.support.browser import chromium, console_login, tile_frames, wait_tile_frames
from tests.support.server import REPO


def start_field_client(url: str, unit: str, token: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "field_client", "--server", url, "--unit", unit, "--token", token,
         "--size", "320x240", "--gps", "none"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")},
    )


@pytest.mark.timeout(120)
async def test_killed_field_client_comes_back_on_the_same_tile(live: LiveServer) -> None:
    token = live.add_unit("veh-03", "vehicle")
    live.add_user("op", "operator")
    client = start_field_client(live.url, "veh-03", token)
    try:
        async with chromium() as browser:
            page = await browser.new_page()
            await console_login(page, live.url, "op", OPERATOR_PASSWORD)
            await page.wait_for_selector(".tile[data-unit-id='veh-03'][data-state='live']", timeout=30_000)
            await wait_tile_frames(page, "veh-03", 20, timeout_s=20)
            await page.evaluate("() => { window.__tile = window.dispatchConsole.tiles.get('veh-03'); }")

            client.send_signal(signal.SIGKILL)
            await asyncio.to_thread(client.wait, 10)
            await page.wait_for_selector(".tile[data-unit-id='veh-03'][data-state='offline']", timeout=15_000)
            assert await page.locator(".tile[data-unit-id='veh-03']").count() == 1
            frozen = await tile_frames(page, "veh-03")

            client = start_field_client(live.url, "veh-03", token)
            await page.wait_for_selector(".tile[data-unit-id='veh-03'][data-state='live']", timeout=30_000)
            # Frames flow again (the count keeps rising); nobody touched the page.
            resumed = await tile_frames(page, "veh-03")
            await wait_tile_frames(page, "veh-03", resumed + 15, timeout_s=20)
            same_tile = await page.evaluate("() => window.__tile === window.dispatchConsole.tiles.get('veh-03')")
            assert same_tile, "the unit must come back on the same tile"
            assert await page.locator(".tile[data-unit-id='veh-03']").count() == 1
            assert frozen > 20
    finally:
        client.kill()
        client.wait()

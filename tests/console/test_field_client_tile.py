"""A `field-client` process killed with SIGKILL and started again: the operator's tile goes
offline in place and comes back live by itself, on the same tile, without anyone clicking."""

from __future__ import annotations

import signal

import pytest

from tests.conftest import OPERATOR_PASSWORD, LiveServer
from tests.support.browser import chromium, console_login, tile_frames, wait_tile_frames
from tests.support.processes import Process


async def start_field_client(url: str, unit: str, token: str) -> Process:
    return await Process.start("-m", "field_client", "--server", url, "--unit", unit, "--token", token,
                               "--size", "320x240", "--gps", "none")


@pytest.mark.timeout(120)
async def test_killed_field_client_comes_back_on_the_same_tile(live: LiveServer) -> None:
    token = live.add_unit("veh-03", "vehicle")
    live.add_user("op", "operator")
    client = await start_field_client(live.url, "veh-03", token)
    try:
        async with chromium() as browser:
            page = await browser.new_page()
            await console_login(page, live.url, "op", OPERATOR_PASSWORD)
            await page.wait_for_selector(".tile[data-unit-id='veh-03'][data-state='live']", timeout=30_000)
            await wait_tile_frames(page, "veh-03", 20, timeout_s=20)
            await page.evaluate("() => { window.__tile = window.dispatchConsole.tiles.get('veh-03'); }")

            await client.stop(signal.SIGKILL)
            await page.wait_for_selector(".tile[data-unit-id='veh-03'][data-state='offline']", timeout=15_000)
            assert await page.locator(".tile[data-unit-id='veh-03']").count() == 1
            frozen = await tile_frames(page, "veh-03")

            client = await start_field_client(live.url, "veh-03", token)
            await page.wait_for_selector(".tile[data-unit-id='veh-03'][data-state='live']", timeout=30_000)
            # Frames flow again (the count keeps rising); nobody touched the page.
            resumed = await tile_frames(page, "veh-03")
            await wait_tile_frames(page, "veh-03", resumed + 15, timeout_s=20)
            same_tile = await page.evaluate("() => window.__tile === window.dispatchConsole.tiles.get('veh-03')")
            assert same_tile, "the unit must come back on the same tile"
            assert await page.locator(".tile[data-unit-id='veh-03']").count() == 1
            assert frozen > 20
    finally:
        await client.stop()

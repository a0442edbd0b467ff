"""The console's map panel (地图) in headless Chromium against a real server: unit markers follow
the fixes, status colours, "dispatch here" sends a goto, GCJ-02 display; and gcj02.js agrees
with the server's geo.gcj02."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from geo.gcj02 import gcj02_to_wgs84, wgs84_to_gcj02
from tests.conftest import OPERATOR_PASSWORD, LiveServer
from tests.support.browser import chromium, console_login
from tests.support.unit_client import RawUnit

STATIC = Path(__file__).resolve().parents[2] / "console" / "static"


async def open_map(page: Page, base: str) -> list[str]:
    """Log in, show the map tab; returns the list of URLs the page requests (kept up to date)."""
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    await console_login(page, base, "op", OPERATOR_PASSWORD)
    await page.click("#side-tabs [data-panel='map-panel']")
    await page.wait_for_function("window.dispatchConsole.map && window.dispatchConsole.map.leaflet", timeout=10_000)
    return requests


async def marker_latlng(page: Page, unit_id: str) -> Any:
    return await page.evaluate("(u) => window.dispatchConsole.map.markers.get(u)?.latlng ?? null", unit_id)


async def wait_marker_at(page: Page, unit_id: str, lat: float, lon: float, timeout_ms: int = 10_000) -> None:
    await page.wait_for_function(
        """([u, lat, lon]) => {
            const m = window.dispatchConsole.map.markers.get(u);
            return !!m && Math.abs(m.latlng[0] - lat) < 1e-7 && Math.abs(m.latlng[1] - lon) < 1e-7;
        }""",
        arg=[unit_id, lat, lon],
        timeout=timeout_ms,
    )


def external(requests: list[str], base: str) -> list[str]:
    return [u for u in requests if not u.startswith(base) and not u.startswith(("data:", "blob:"))]


async def test_marker_appears_and_moves_with_the_fixes_and_nothing_leaves_the_server(live: LiveServer) -> None:
    token = live.add_unit("bc-21")
    live.add_user("op", "operator")
    unit = await RawUnit(live.url, "bc-21", token).connect()
    try:
        first = {"lat": 39.9042, "lon": 116.4074, "ts": time.time()}
        assert (await unit.call("position", first))["ok"]
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            requests = await open_map(page, live.url)
            await page.wait_for_selector(".map-unit[data-unit-id='bc-21']", timeout=10_000)
            await wait_marker_at(page, "bc-21", first["lat"], first["lon"])  # no tiles: WGS-84 as is
            assert await page.get_attribute(".map-unit[data-unit-id='bc-21']", "data-status") == "online"
            box = await page.locator("#map").bounding_box()
            assert box and box["width"] > 200 and box["height"] > 200, box  # the shown panel has a size

            before = await marker_latlng(page, "bc-21")
            for i in range(1, 4):
                fix = {"lat": 39.9042 + 0.001 * i, "lon": 116.4074 + 0.0005 * i, "ts": time.time()}
                assert (await unit.call("position", fix))["ok"]
                await wait_marker_at(page, "bc-21", fix["lat"], fix["lon"])
            after = await marker_latlng(page, "bc-21")
            assert after != before
            track = await page.evaluate("window.dispatchConsole.map.markers.get('bc-21').track")
            assert len(track) == 4 and track[0] == before and track[-1] == after
            # The marker is drawn where the hook says, and the view follows the unit.
            in_view = await page.evaluate(
                "() => { const m = window.dispatchConsole.map; return m.leaflet.getBounds()"
                ".contains(m.markers.get('bc-21').marker.getLatLng()); }"
            )
            assert in_view

            assert await page.evaluate("typeof window.L === 'object' && typeof window.L.map === 'function'")
            assert any(u.endswith("/vendor/leaflet/leaflet.js") for u in requests)
            assert await page.locator("#map .leaflet-tile").count() == 0  # no tile URL: no tile layer
            offsite = external(requests, live.url)
            assert not offsite, f"the map must work offline; it requested {offsite}"
            await page.screenshot(path=str(Path(live.settings.data_dir) / "console-map.png"))
    finally:
        await unit.close()


async def test_stale_and_offline_markers(live: LiveServer) -> None:
    token = live.add_unit("bc-22")
    live.add_user("op", "operator")
    unit = await RawUnit(live.url, "bc-22", token).connect()
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        await open_map(page, live.url)
        # An old fix (back-filled after a link loss): the unit is on line but its position is stale.
        assert (await unit.call("position", {"lat": 39.91, "lon": 116.41, "ts": time.time() - 300}))["ok"]
        await page.wait_for_selector(".map-unit[data-unit-id='bc-22'][data-status='stale']", timeout=10_000)
        await page.hover(".map-unit[data-unit-id='bc-22']")
        tip = await page.inner_text(".leaflet-tooltip.map-tip")
        assert "最后定位" in tip and "分钟前" in tip, tip
        await unit.close()
        await page.wait_for_selector(".map-unit[data-unit-id='bc-22'][data-status='offline']", timeout=15_000)


async def test_dispatch_here_sends_the_nearest_unit_a_goto(make_live: Any) -> None:
    # GCJ-02 display (no tile URL, so still no requests): markers are shifted, what is sent is WGS-84.
    live: LiveServer = await make_live(geo={"tile_crs": "gcj02"})
    token = live.add_unit("bc-23")
    live.add_user("op", "operator")
    unit = await RawUnit(live.url, "bc-23", token).connect()
    try:
        assert (await unit.call("position", {"lat": 39.9, "lon": 116.4, "ts": time.time()}))["ok"]
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            requests = await open_map(page, live.url)
            shown = wgs84_to_gcj02(39.9, 116.4)
            await wait_marker_at(page, "bc-23", shown[0], shown[1])

            # Click the marker: its tile opens on the wall and a popup names it.
            await page.click(".map-unit[data-unit-id='bc-23']")
            await page.wait_for_selector(".tile[data-unit-id='bc-23']", timeout=10_000)
            assert "bc-23" in await page.inner_text(".map-pop")

            await page.evaluate("window.dispatchConsole.map.dispatchAt(39.905, 116.41)")
            await page.wait_for_selector(".map-dispatch[data-state='listed']", timeout=10_000)
            row = page.locator(".map-near-row[data-unit-id='bc-23']")
            assert (await row.locator(".map-near-dist").inner_text()).endswith(("米", "公里"))
            await row.locator(".map-near-pick").click()
            await page.wait_for_selector(".map-dispatch[data-state='sent']", timeout=10_000)
            assert not external(requests, live.url)

        pending = await asyncio.wait_for(unit.pending.get(), 10)
        sync = await unit.call("sync", {"after_seq": 0})
        gotos = [i for i in sync["instructions"] if i["type"] == "goto"]
        assert pending and len(gotos) == 1, sync
        payload = gotos[0]["payload"]
        assert payload["note"] == "派往此处"
        assert abs(payload["lat"] - 39.905) < 1e-6 and abs(payload["lon"] - 116.41) < 1e-6, payload
    finally:
        await unit.close()


def test_gcj02_js_matches_the_server() -> None:
    points = [
        (39.9042, 116.4074), (31.2304, 121.4737), (22.5431, 114.0579), (38.0428, 114.5149), (43.8171, 125.3235),
        (29.6520, 91.1721), (0.5, 100.0), (48.8566, 2.3522), (40.7128, -74.006), (55.8271, 137.8347), (0.8293, 72.004),
    ]
    script = (
        f"import {{ wgs84ToGcj02, gcj02ToWgs84 }} from {json.dumps((STATIC / 'gcj02.js').as_uri())};\n"
        f"const pts = {json.dumps(points)};\n"
        "console.log(JSON.stringify(pts.map(([a, b]) => [wgs84ToGcj02(a, b), gcj02ToWgs84(a, b)])));\n"
    )
    out = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    for (lat, lon), (fwd, inv) in zip(points, json.loads(out.stdout), strict=True):
        assert fwd == pytest.approx(list(wgs84_to_gcj02(lat, lon)), abs=1e-9), (lat, lon)
        assert inv == pytest.approx(list(gcj02_to_wgs84(lat, lon)), abs=1e-9), (lat, lon)

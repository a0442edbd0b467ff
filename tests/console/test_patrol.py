"""Patrol mode (视频巡检) cycles the large view through every publishing unit at the configured interval."""

from __future__ import annotations

import time
from itertools import pairwise

import aiohttp

from tests.conftest import OPERATOR_PASSWORD
from tests.support.browser import chromium, console_login
from tests.support.peers import make_publisher, whip_publish


async def test_patrol_cycles_through_publishing_units(
    make_live: object, http: aiohttp.ClientSession, vp8_loop: object
) -> None:
    live = await make_live(console={"patrol_interval_s": 1.0})  # type: ignore[operator]
    live.add_user("op", "operator")
    pubs = []
    for unit in ("bc-01", "bc-02", "bc-03"):
        pub = await make_publisher(vp8_loop)  # type: ignore[arg-type]
        await whip_publish(http, live.url, unit, live.add_unit(unit), pub)
        pubs.append(pub)
    try:
        async with chromium() as browser:
            page = await browser.new_page()
            await console_login(page, live.url, "op", OPERATOR_PASSWORD)
            await page.wait_for_function("window.dispatchConsole.tiles.size === 3", timeout=15_000)
            await page.click("#patrol-toggle")
            await page.wait_for_function("window.dispatchConsole.patrol.active === true", timeout=5_000)
            seen: list[tuple[float, str]] = []
            for _ in range(4):
                current = await page.evaluate(
                    """(prev) => new Promise((resolve) => {
                        const end = performance.now() + 5000;
                        const tick = () => {
                            const c = window.dispatchConsole.patrol.current;
                            if ((c && c !== prev) || performance.now() > end) resolve(c); else setTimeout(tick, 50);
                        };
                        tick();
                    })""",
                    seen[-1][1] if seen else None,
                )
                seen.append((time.monotonic(), current))
            units = [u for _, u in seen]
            assert set(units) == {"bc-01", "bc-02", "bc-03"}, units
            gaps = [b - a for (a, _), (b, _) in pairwise(seen[1:])]
            assert all(0.6 < g < 2.5 for g in gaps), gaps
            assert await page.is_visible("#patrol-panel")
            await page.click("#patrol-pause")
            paused = await page.evaluate("window.dispatchConsole.patrol.current")
            await page.wait_for_timeout(2500)
            assert await page.evaluate("window.dispatchConsole.patrol.current") == paused
    finally:
        for pub in pubs:
            await pub.close()

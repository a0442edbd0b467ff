"""The console at the screen sizes of a command room (1366x768, 1920x1080, 3840x2160): no
horizontal scrolling on any tab, a wall that fills the screen, one language per screen, and a
screenshot of each tab (docs/screenshots/ with UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.conftest import OPERATOR_PASSWORD, LiveServer
from tests.support.browser import chromium, console_login
from tests.support.console_page import (
    ADMIN_TABS,
    SIDE_TABS,
    assert_no_overflow,
    foreign_words,
    shoot,
    show_admin,
    show_side_tab,
    visible_text,
    wall_fill,
)
from tests.support.peers import Publisher, make_publisher, whip_publish

UNITS = ("bc-0916-0001", "bc-0916-0002", "veh-0916-0003", "ph-0916-0004")
SIZES = ((1366, 768), (1920, 1080), (3840, 2160))


async def publish_all(live: LiveServer, http: aiohttp.ClientSession, loop: object) -> list[Publisher]:
    pubs = []
    for unit in UNITS:
        token = live.add_unit(unit, "vehicle" if unit.startswith("veh") else "body")
        pub = await make_publisher(loop)  # type: ignore[arg-type]
        await whip_publish(http, live.url, unit, token, pub)
        pubs.append(pub)
    return pubs


@pytest.mark.timeout(240)
async def test_every_tab_fits_every_screen_and_the_wall_fills_it(
    live: LiveServer, http: aiohttp.ClientSession, vp8_loop: object, tmp_path: Path
) -> None:
    live.add_user("root", "admin")
    live.add_user("zhang.wei", "supervisor")
    live.add_user("li.na", "auditor")
    pubs = await publish_all(live, http, vp8_loop)
    try:
        async with chromium() as browser:
            for width, height in SIZES:
                context = await browser.new_context(viewport={"width": width, "height": height})
                page = await context.new_page()
                await console_login(page, live.url, "root", OPERATOR_PASSWORD)
                await page.wait_for_function(f"window.dispatchConsole.tiles.size === {len(UNITS)}", timeout=15_000)
                for unit in UNITS:
                    await page.wait_for_selector(f".tile[data-unit-id='{unit}'][data-state='live']", timeout=30_000)
                size = f"{width}x{height}"
                for panel in SIDE_TABS:
                    await show_side_tab(page, panel)
                    await assert_no_overflow(page, f"{size} tab {panel}")
                    await shoot(page, tmp_path, f"{size}-{panel}")
                for layout in ("1", "4", "9", "16", "auto"):
                    await page.click(f"#wall-layouts [data-layout='{layout}']")
                    await assert_no_overflow(page, f"{size} layout {layout}")
                if (width, height) == (1920, 1080):
                    await page.click("#wall-layouts [data-layout='4']")
                    await page.wait_for_function("window.dispatchConsole.layout === 4")
                    fill = await wall_fill(page)
                    assert fill >= 0.8, f"a 2x2 wall fills {fill:.0%} of the wall at 1920x1080"
                    await show_side_tab(page, "roster-area")
                    await shoot(page, tmp_path, "wall", keep=True)
                    # The roster shows every id in full: no two rows read the same.
                    ids = await page.locator("#roster-body td.roster-id").all_inner_texts()
                    assert {i.splitlines()[0] for i in ids} == set(UNITS)
                for tab in ADMIN_TABS:
                    await show_admin(page, tab)
                    await assert_no_overflow(page, f"{size} admin {tab}")
                    keep = (width, height) == (1920, 1080)
                    await shoot(page, tmp_path, f"admin-{tab}" if keep else f"{size}-admin-{tab}", keep=keep)
                await page.click("#admin-back")
                await context.close()
    finally:
        for pub in pubs:
            await pub.close()


@pytest.mark.timeout(180)
async def test_one_language_per_screen(live: LiveServer, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """Chinese by default, English after the switch; neither screen shows the other language
    (data people typed, ids and case numbers aside)."""
    live.add_user("root", "admin")
    live.add_unit("bc-01")
    admin = await live.admin()
    async with http.post(f"{live.url}/api/instructions", headers={"Authorization": f"Bearer {admin}"},
                         json={"unit": "bc-01", "type": "text", "text": "x", "ttl_s": 60}) as r:
        assert r.status == 201
    data = ("bc-01", "root", "Asia/Shanghai")
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1920, "height": 1080})
        page = await context.new_page()
        await page.goto(f"{live.url}/")
        await page.wait_for_selector("#login-submit")
        assert foreign_words(await visible_text(page), "zh") == []
        await console_login(page, live.url, "root", OPERATOR_PASSWORD)
        for language in ("zh", "en"):
            for panel in SIDE_TABS:
                await show_side_tab(page, panel)
                if panel == "instructions-panel":
                    await page.wait_for_selector("li.instr", timeout=10_000)
                words = foreign_words(await visible_text(page), language, data)
                assert words == [], f"{language} screen, tab {panel}: {words}"
            for tab in ADMIN_TABS:
                await show_admin(page, tab)
                words = foreign_words(await visible_text(page), language, data)
                assert words == [], f"{language} screen, admin {tab}: {words}"
            await page.click("#admin-back")
            await page.click("#help-btn")
            words = foreign_words(await visible_text(page), language, data)
            assert words == [], f"{language} help: {words}"
            await shoot(page, tmp_path, f"help-{language}")
            await page.keyboard.press("Escape")
            if language == "zh":
                await page.click("#lang-btn")
                await page.wait_for_function("document.documentElement.lang === 'en' && window.dispatchConsole",
                                             timeout=10_000)
                await page.wait_for_selector("#app:not([hidden])", timeout=10_000)
        await context.close()

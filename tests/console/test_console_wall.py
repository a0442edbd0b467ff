"""The wall as an operator uses it: layouts by keyboard (remembered), a unit dragged from the roster,
double-click for full screen, the help overlay; tiles that say publishing, online without video
or offline since when; the whole console dimmed once when its own link to the server is down;
a queued instruction cancelled, and the feedback for an offline target. And each role sees only
what it may use."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.conftest import OPERATOR_PASSWORD, LiveServer
from tests.dispatch_server.test_actions import api
from tests.support.browser import chromium, console_login
from tests.support.console_page import show_side_tab
from tests.support.peers import make_publisher, whip_publish
from tests.support.unit_client import RawUnit


@pytest.mark.timeout(180)
async def test_layouts_drag_full_screen_tile_states_and_link_down(
    live: LiveServer, http: aiohttp.ClientSession, vp8_loop: object
) -> None:
    live.add_user("op", "operator")
    token = live.add_unit("bc-w-01")
    online_token = live.add_unit("bc-w-02")
    live.add_unit("bc-w-03")
    pub = await make_publisher(vp8_loop)  # type: ignore[arg-type]
    await whip_publish(http, live.url, "bc-w-01", token, pub)
    linked = await RawUnit(live.url, "bc-w-02", online_token).connect()  # online, no video
    try:
        async with chromium() as browser:
            context = await browser.new_context(viewport={"width": 1600, "height": 900})
            page = await context.new_page()
            await console_login(page, live.url, "op", OPERATOR_PASSWORD)
            await page.wait_for_selector(".tile[data-unit-id='bc-w-01'][data-state='live']", timeout=20_000)
            assert await page.locator("#side-tabs [data-panel='requests-panel']").is_hidden()  # not an operator's

            # Layouts by keyboard, remembered across a reload.
            await page.keyboard.press("3")
            await page.wait_for_function("window.dispatchConsole.layout === 9")
            assert await page.get_attribute("#wall-layouts [data-layout='9']", "aria-pressed") == "true"
            await page.reload()
            await page.wait_for_function("window.dispatchConsole && window.dispatchConsole.layout === 9")
            await page.wait_for_selector(".tile[data-unit-id='bc-w-01'][data-state='live']", timeout=20_000)
            await page.keyboard.press("0")
            await page.wait_for_function("window.dispatchConsole.layout === 'auto'")

            # Drag two units from the roster onto the wall: online without video, and offline since when.
            for unit_id in ("bc-w-02", "bc-w-03"):
                await page.drag_and_drop(f"#roster-body tr[data-unit-id='{unit_id}']", "#video-wall")
                await page.wait_for_selector(f".tile[data-unit-id='{unit_id}']", timeout=5_000)
            online = page.locator(".tile[data-unit-id='bc-w-02']")
            offline = page.locator(".tile[data-unit-id='bc-w-03']")
            assert await online.get_attribute("data-presence") == "online"
            assert "在线，无视频" in await online.locator(".tile-overlay-main").inner_text()
            assert await offline.get_attribute("data-presence") == "offline"
            assert "离线" in await offline.locator(".tile-overlay-main").inner_text()
            assert await page.locator(".tile[data-unit-id='bc-w-01']").get_attribute("data-presence") == "publishing"
            # Labels are in a bar under the picture, not over it.
            stage = await page.locator(".tile[data-unit-id='bc-w-01'] .tile-stage").bounding_box()
            bar = await page.locator(".tile[data-unit-id='bc-w-01'] .tile-bar").bounding_box()
            assert stage and bar and bar["y"] >= stage["y"] + stage["height"] - 1

            # Double-click: full screen; Escape leaves it.
            await page.dblclick(".tile[data-unit-id='bc-w-01'] .tile-stage")
            await page.wait_for_selector(".tile--full[data-unit-id='bc-w-01']")
            await page.keyboard.press("Escape")
            await page.wait_for_selector(".tile--full", state="detached")

            # The help overlay lists the shortcuts.
            await page.keyboard.press("?")
            await page.wait_for_selector("#help-dialog[open]")
            assert "分屏" in await page.inner_text("#help-dialog")
            await page.keyboard.press("Escape")

            # The console's own link drops: it dims and says so once; the tiles say nothing of the units.
            await context.set_offline(True)
            await page.evaluate("() => window.dispatchConsole.socket.io.engine.close()")  # the link drops now
            await page.wait_for_selector("#app[data-link='down'] #link-banner:not([hidden])", timeout=20_000)
            presences = await page.locator(".tile").evaluate_all("(ts) => ts.map((t) => t.dataset.presence)")
            assert set(presences) == {"unreachable"}, presences
            assert await page.locator("#link-banner").count() == 1
            await context.set_offline(False)
            await page.wait_for_selector("#app[data-link='up']", timeout=30_000)
            await page.wait_for_selector(".tile[data-unit-id='bc-w-01'][data-presence='publishing']", timeout=20_000)
            await context.close()
    finally:
        await linked.close()
        await pub.close()


@pytest.mark.timeout(120)
async def test_cancel_a_queued_instruction_and_say_when_the_target_is_offline(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    live.add_user("op", "operator")
    live.add_unit("bc-c-01")
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1366, "height": 768})
        await console_login(page, live.url, "op", OPERATOR_PASSWORD)
        await show_side_tab(page, "instructions-panel")
        await page.select_option("#instruction-unit", "bc-c-01")
        await page.fill("#instruction-text", "原地待命")
        await page.click("#instruction-send")
        result = page.locator("#instruction-result[data-reach='offline']")
        await result.wait_for(timeout=10_000)
        assert await result.inner_text() == "已排队，单位离线，上线后送达"
        row = page.locator("li.instr[data-unit-id='bc-c-01'][data-state='queued']")
        await row.wait_for(timeout=10_000)
        iid = await row.get_attribute("data-instruction-id")
        await row.locator(".instr-cancel").click()
        await page.wait_for_selector(f"li.instr[data-instruction-id='{iid}'][data-state='cancelled']", timeout=10_000)
        assert "调度员撤销" in await page.inner_text(f"li.instr[data-instruction-id='{iid}']")
        status, ins = await api(http, "GET", f"{live.url}/api/instructions/{iid}", await live.login("op"))
        assert ins["state"] == "cancelled"


@pytest.mark.parametrize("role, visible, hidden", [
    ("operator", ["#patrol-toggle", "#action-new"], ["#admin-toggle", "[data-panel='requests-panel']"]),
    ("auditor", ["#admin-toggle", "[data-panel='requests-panel']", "[data-panel='recordings-panel']"],
     ["#patrol-toggle", "#action-new", "#instruction-form"]),
    ("supervisor", ["#admin-toggle", "[data-panel='requests-panel']", "#action-new"], []),
])
async def test_each_role_sees_only_what_it_may_use(
    live: LiveServer, role: str, visible: list[str], hidden: list[str]
) -> None:
    live.add_user("person", role)
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1366, "height": 768})
        await console_login(page, live.url, "person", OPERATOR_PASSWORD)
        await show_side_tab(page, "actions-panel")
        for selector in visible:
            assert await page.locator(selector).first.is_visible(), f"{role} should see {selector}"
        for selector in hidden:
            assert await page.locator(selector).first.is_hidden(), f"{role} should not see {selector}"
        if role != "operator":
            await page.click("#admin-toggle")
            tabs: Any = await page.locator("#admin-tabs [data-admin]:not([hidden])").evaluate_all(
                "(ts) => ts.map((t) => t.dataset.admin)")
            assert tabs == {"auditor": ["audit"], "supervisor": ["units", "audit", "holds"]}[role]

"""Dispatch in the operator console (headless Chromium): SOS alarms, actions and instructions."""

from __future__ import annotations

import time

import aiohttp

from tests.conftest import OPERATOR_PASSWORD, LiveServer
from tests.support.browser import chromium, console_login, wait_tile_frames
from tests.support.peers import make_publisher, whip_publish
from tests.support.unit_client import RawUnit


async def test_sos_alarms_the_console_with_position_and_opens_the_tile(
    live: LiveServer, http: aiohttp.ClientSession, vp8_loop: object
) -> None:
    token = live.add_unit("bc-05")
    token6 = live.add_unit("bc-06")
    live.add_user("op", "operator")
    pub = await make_publisher(vp8_loop)  # type: ignore[arg-type]
    await whip_publish(http, live.url, "bc-05", token, pub)
    unit = await RawUnit(live.url, "bc-05", token).connect()
    try:
        assert (await unit.call("position", {"lat": 38.04321, "lon": 114.51234, "ts": time.time()}))["ok"]
        async with chromium() as browser:
            page = await browser.new_page(bypass_csp=True)  # wait_for_function evaluates strings
            await console_login(page, live.url, "op", OPERATOR_PASSWORD)
            await page.wait_for_function("window.dispatchConsole.roster.size === 2", timeout=10_000)
            ack = await unit.call("sos", {"note": "现场冲突"})
            assert ack["ok"], ack
            banner = page.locator(f"#sos-banner[data-alert-id='{ack['alert_id']}'][data-unit-id='bc-05']")
            await banner.wait_for(state="visible", timeout=10_000)
            position = await banner.locator(".sos-position").inner_text()
            assert "38.04321" in position and "114.51234" in position
            await page.wait_for_selector(".tile[data-unit-id='bc-05'][data-alarm='sos']", timeout=10_000)
            assert await page.locator(".tile[data-unit-id='bc-05']").is_visible()
            await wait_tile_frames(page, "bc-05", 5, timeout_s=15)
            await banner.locator(".sos-ack").click()
            await page.wait_for_function(
                f"window.dispatchConsole.alerts.get('{ack['alert_id']}').state === 'acknowledged'", timeout=10_000)
            async with http.get(f"{live.url}/api/alerts?state=open",
                                headers={"Authorization": f"Bearer {await live.login('op')}"}) as r:
                assert (await r.json())["alerts"] == []
            # A unit that is not publishing: the alarm opens its tile anyway (shown offline).
            async with http.post(f"{live.url}/api/units/bc-06/sos", json={"lat": 38.1, "lon": 114.6},
                                 headers={"Authorization": f"Bearer {token6}"}) as r:
                assert r.status == 201
            await page.wait_for_selector(".tile[data-unit-id='bc-06'][data-alarm='sos']", timeout=10_000)
    finally:
        await unit.close()
        await pub.close()


async def test_operator_runs_an_action_and_sees_instruction_states(live: LiveServer) -> None:
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    unit = await RawUnit(live.url, "bc-01", token).connect()
    try:
        async with chromium() as browser:
            page = await browser.new_page(bypass_csp=True)  # wait_for_function evaluates strings
            await console_login(page, live.url, "op", OPERATOR_PASSWORD)
            await page.click("#side-tabs [data-panel='actions-panel']")
            await page.click("#action-new")
            await page.fill("#action-case-number", "(2026)冀0916执99号")
            await page.fill("#action-title", "腾退 厂房")
            await page.select_option("#action-type", "eviction")
            await page.check("#action-units input[value='bc-01']")
            await page.fill("#action-judge", "李法官")
            await page.click("#action-save")
            card = page.locator("#actions-list li.action-card[data-state='planned']")
            await card.wait_for(timeout=10_000)
            action_id = await card.get_attribute("data-action-id")
            await card.locator(".action-start").click()
            running_card = f"li.action-card[data-action-id='{action_id}'][data-state='running']"
            await page.wait_for_selector(running_card, timeout=10_000)
            await page.wait_for_selector(f"tr[data-unit-id='bc-01'][data-action-id='{action_id}']", state="attached",
                                         timeout=10_000)

            await page.locator(f"li.action-card[data-action-id='{action_id}'] .action-instruct").click()
            await page.select_option("#instruction-type", "text")
            await page.fill("#instruction-text", "封存 现场 物品")
            await page.click("#instruction-send")
            row = page.locator("#instructions-list li.instr[data-unit-id='bc-01']")
            await row.wait_for(timeout=10_000)
            iid = await row.get_attribute("data-instruction-id")
            pending = await unit.call("sync", {"after_seq": 0})
            assert [i["id"] for i in pending["instructions"]] == [iid]
            assert pending["instructions"][0]["case_number"] == "（2026）冀0916执99号"
            await unit.call("received", {"ids": [iid]})
            delivered_row = f"li.instr[data-instruction-id='{iid}'][data-state='delivered']"
            await page.wait_for_selector(delivered_row, timeout=10_000)
            await unit.call("instruction_state", {"id": iid, "state": "acknowledged"})
            await unit.call("instruction_state", {"id": iid, "state": "done"})
            await page.wait_for_selector(f"li.instr[data-instruction-id='{iid}'][data-state='done']", timeout=10_000)

            # A bad case number is refused with the server's reason, shown in the form.
            await page.click("#side-tabs [data-panel='actions-panel']")
            await page.click("#action-new")
            await page.fill("#action-case-number", "2026-99")
            await page.fill("#action-title", "x")
            await page.click("#action-save")
            await page.wait_for_selector("#action-error:not([hidden])", timeout=10_000)
            assert "案号格式不正确" in await page.inner_text("#action-error")  # the refusal as a sentence
    finally:
        await unit.close()

"""A working day run from the console alone, in Chromium, with a real ``field-client`` process as
the unit: the administrator creates the supervisor's account; the supervisor registers the unit
(its token shown once), plans and starts an action, watches and instructs the unit, ends the
action, reviews the recording, issues a party's access code and decides the party's request, sets
a legal hold, and reads the audit trail. Every step is done in the page and checked through the
API; no terminal is used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page

from tests.conftest import OPERATOR_PASSWORD, LiveServer
from tests.dispatch_server.test_actions import api
from tests.recordings.test_recorder import FAST
from tests.support.browser import chromium, console_login, portal_login, wait_tile_frames
from tests.support.console_page import shoot, show_admin, show_side_tab
from tests.support.processes import Process
from tests.support.secrets import remember

UNIT = "bc-day-0001"
CASE = "（2026）冀0916执77号"
SUPERVISOR_PASSWORD = remember("supervisor-pass-9")


async def wait_js(page: Page, condition: str, timeout_ms: int = 20_000, show: str = "null") -> None:
    """Wait for a JS condition; on a timeout the failure shows ``show`` evaluated in the page."""
    try:
        await page.wait_for_function(condition, timeout=timeout_ms)
    except Exception as exc:
        raise AssertionError(f"never {condition}: {await page.evaluate(show)}") from exc


@pytest.mark.timeout(300)
async def test_a_supervisor_runs_a_working_day_from_the_console(
    make_live: Any, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    live: LiveServer = await make_live(archive=FAST)
    live.add_user("root", "admin")
    admin = await live.login("root")
    client: Process | None = None
    async with chromium() as browser:
        try:
            # -- morning: the administrator creates the supervisor's account ---------------------------
            page = await (await browser.new_context(viewport={"width": 1920, "height": 1080})).new_page()
            await console_login(page, live.url, "root", OPERATOR_PASSWORD)
            await show_admin(page, "users")
            await page.fill("#adm-user-name", "zhang")
            await page.select_option("#adm-user-role", "supervisor")
            await page.fill("#adm-user-password", SUPERVISOR_PASSWORD)
            await page.click("#adm-user-create")
            await page.wait_for_selector("#adm-notice[data-kind='ok']")
            status, users = await api(http, "GET", f"{live.url}/api/users", admin)
            assert {"username": "zhang", "role": "supervisor"}.items() <= next(
                u for u in users["users"] if u["username"] == "zhang").items()
            await page.click("#logout-btn")

            # -- the supervisor registers the unit of the day (its token shown once) ---------------------
            await console_login(page, live.url, "zhang", SUPERVISOR_PASSWORD)
            assert await page.locator("button[data-admin='users']").is_hidden()  # people are the admin's
            await show_admin(page, "units")
            await page.fill("#adm-unit-id", UNIT)
            await page.select_option("#adm-unit-kind", "body")
            await page.fill("#adm-unit-name", "一组记录仪")
            await page.click("#adm-unit-register")
            await page.wait_for_selector(f"#adm-token[data-unit-id='{UNIT}'] #adm-token-value")
            token = remember(await page.inner_text("#adm-token-value"))
            status, units = await api(http, "GET", f"{live.url}/api/units", admin)
            assert {"id": UNIT, "name": "一组记录仪", "kind": "body"}.items() <= next(
                u for u in units["units"] if u["id"] == UNIT).items()
            await page.click("#logout-btn")

            # The unit goes on duty with the token it was given.
            client = await Process.start("-m", "field_client", "--server", live.url, "--unit", UNIT, "--token", token,
                                         "--size", "320x240", "--gps", "none", "--auto-ack")

            # -- the supervisor plans and starts an action -------------------------------------------
            await console_login(page, live.url, "zhang", SUPERVISOR_PASSWORD)
            await page.wait_for_selector(f".tile[data-unit-id='{UNIT}'][data-state='live']", timeout=30_000)
            await show_side_tab(page, "actions-panel")
            await page.click("#action-new")
            await page.fill("#action-case-number", CASE)
            await page.fill("#action-title", "查封某公司车辆")
            await page.select_option("#action-type", "seizure")
            await page.check(f"#action-units input[value='{UNIT}']")
            await page.click("#action-save")
            card = page.locator("li.action-card[data-state='planned']")
            await card.wait_for(timeout=10_000)
            await card.locator(".action-start").click()
            await page.wait_for_selector("li.action-card[data-state='running']", timeout=10_000)
            supervisor = await live.login("zhang", SUPERVISOR_PASSWORD)
            status, actions = await api(http, "GET", f"{live.url}/api/actions", supervisor)
            [action] = actions["actions"]
            assert action["state"] == "running" and action["case_number"] == CASE and action["units"] == [UNIT]

            # -- watch and instruct ------------------------------------------------------------------
            await wait_tile_frames(page, UNIT, 10, timeout_s=20)
            await show_side_tab(page, "instructions-panel")
            await page.select_option("#instruction-target", "unit")
            await page.select_option("#instruction-unit", UNIT)
            await page.fill("#instruction-text", "前往3号门")
            await page.click("#instruction-send")
            await page.wait_for_selector("#instruction-result[data-reach='online']:not([hidden])")
            await wait_js(page, "[...window.dispatchConsole.instructions.values()].some("
                                "(i) => i.state === 'acknowledged')")
            status, sent = await api(http, "GET", f"{live.url}/api/instructions?unit={UNIT}", supervisor)
            assert sent["instructions"][0]["payload"]["text"] == "前往3号门"
            assert sent["instructions"][0]["state"] in ("acknowledged", "done")
            await shoot(page, tmp_path, "day-instructed")

            # -- the action ends; the recording is reviewed -------------------------------------------
            await show_side_tab(page, "actions-panel")
            await page.locator("li.action-card[data-state='running'] .action-end").click()
            await wait_js(page, f"window.dispatchConsole.actions.get('{action['id']}').state === 'ended'")
            await client.stop()
            client = None
            await show_side_tab(page, "recordings-panel")
            await page.fill("#recordings-panel input[name='case']", CASE)
            await page.click("#recordings-panel .pb-search button[type='submit']")
            status, found = await api(http, "GET", f"{live.url}/api/recordings?case={CASE}", supervisor)
            assert found["recordings"], "the action's recording is in the archive"
            item = page.locator(f".pb-item[data-recording-id='{found['recordings'][0]['id']}'] button")
            await item.wait_for(timeout=20_000)
            await item.click()
            await wait_js(page, "(() => { const s = window.dispatchConsole.playback.state();"
                                " return s.recording && s.segments.length > 0 && s.time > 0.5; })()", 30_000,
                          show="window.dispatchConsole.playback.state()")
            await shoot(page, tmp_path, "day-playback")
            await page.click("#playback-view .pb-bar button.btn")  # close the player

            # -- a party asks for the footage; the supervisor decides ---------------------------------
            await show_side_tab(page, "requests-panel")
            await page.fill("#code-case", CASE)
            await page.fill("#code-party", "李四")
            await page.click("#code-issue")
            await page.wait_for_selector("#code-out[data-code]")
            code = remember(str(await page.get_attribute("#code-out", "data-code")))
            portal = await (await browser.new_context()).new_page()
            await portal_login(portal, live.url, CASE, code, "李四")
            await portal.select_option("#request-action", action["id"])
            await portal.fill("#request-reason", "核实查封过程")
            await portal.click("#request-submit")
            await portal.wait_for_selector(".portal-request[data-state='pending']")
            await page.wait_for_selector(".request-row[data-state='pending']", timeout=10_000)
            await page.click(".request-row[data-state='pending']")
            await page.fill("#decision-reason", "依法公开")
            await page.click("#request-detail .decision-approve")
            await page.wait_for_selector("#request-detail[data-state='approved']", timeout=10_000)
            status, requests = await api(http, "GET", f"{live.url}/api/footage-requests", supervisor)
            assert [r["state"] for r in requests["requests"]] == ["approved"]

            # -- a legal hold on the case --------------------------------------------------------------
            await show_admin(page, "holds")
            await page.fill("#adm-hold-case", CASE)
            await page.fill("#adm-hold-reason", "当事人提起执行异议")
            await page.click("#adm-hold-set")
            await page.wait_for_selector("#adm-notice[data-kind='ok']")
            status, holds = await api(http, "GET", f"{live.url}/api/holds", supervisor)
            assert [h["case_number"] for h in holds["holds"]] == [CASE.replace("（", "(").replace("）", ")")] or \
                [h["case_number"] for h in holds["holds"]] == [CASE]

            # -- the audit trail of the day --------------------------------------------------------------
            await show_admin(page, "audit")
            await page.fill("#adm-audit-unit", UNIT)
            await page.click("#adm-audit-search")
            await page.wait_for_selector("#adm-audit-results tr[data-verb='instruction.queued']")
            verbs = set(await page.locator("#adm-audit-results tr[data-verb]").evaluate_all(
                "(rows) => rows.map((r) => r.dataset.verb)"))
            assert {"unit.registered", "instruction.queued", "instruction.delivered"} <= verbs, verbs
            await shoot(page, tmp_path, "day-audit")
            status, trail = await api(http, "GET", f"{live.url}/api/audit?unit={UNIT}", supervisor)
            assert {e["verb"] for e in trail["entries"]} >= {"unit.registered", "instruction.queued"}
        finally:
            if client is not None:
                await client.stop()

"""Every administration action done through the console's screens and checked through the API:
units (rotate, disable with a connected unit disconnected at once, enable), users (reset a
password, change a role, disable, enable), the audit trail exported to CSV, legal holds released
with a reason, retention dry run then run."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from playwright.async_api import Page

from tests.conftest import OPERATOR_PASSWORD, LiveServer
from tests.dispatch_server.test_actions import api
from tests.support.browser import chromium, console_login
from tests.support.console_page import show_admin
from tests.support.secrets import remember
from tests.support.unit_client import RawUnit

CASE = "（2026）冀0916执55号"


async def notice(page: Page, kind: str = "ok", saying: str = "") -> str:
    """The admin screen's notice of ``kind``; with ``saying``, the one that contains it (a notice
    of the same kind from the previous action may still show until this action's arrives)."""
    selector = f"#adm-notice[data-kind='{kind}']:not([hidden])"
    if saying:
        selector += f":has-text('{saying}')"
    await page.wait_for_selector(selector, timeout=10_000)
    return await page.inner_text("#adm-notice")


@pytest.mark.timeout(180)
async def test_admin_screens_do_what_they_say(make_live: Any, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    live: LiveServer = await make_live()
    live.add_user("root", "admin")
    live.add_user("li", "operator")
    admin = await live.login("root")
    token = live.add_unit("bc-adm-01")
    unit = await RawUnit(live.url, "bc-adm-01", token).connect()
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True)
        page = await context.new_page()
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await console_login(page, live.url, "root", OPERATOR_PASSWORD)

        # Units: a new token closes the unit's link; the old token no longer works.
        await show_admin(page, "units")
        row = page.locator("tr[data-unit-id='bc-adm-01']")
        await row.locator(".adm-rotate").click()
        await page.wait_for_selector("#adm-token[data-unit-id='bc-adm-01'] #adm-token-value")
        new_token = remember(await page.inner_text("#adm-token-value"))
        assert new_token != token
        await unit.until_disconnected()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await RawUnit(live.url, "bc-adm-01", token).connect()
        # Disable: the connected unit is disconnected at once and refused; enable: it connects again.
        unit = await RawUnit(live.url, "bc-adm-01", new_token).connect()
        await page.locator("tr[data-unit-id='bc-adm-01'] .adm-disable").click()
        assert "已停用" in await notice(page)
        await unit.until_disconnected()
        status, units = await api(http, "GET", f"{live.url}/api/units", admin)
        assert next(u for u in units["units"] if u["id"] == "bc-adm-01")["disabled"] is True
        await page.wait_for_selector("tr[data-unit-id='bc-adm-01'][data-disabled='true'] .adm-enable")
        await page.locator("tr[data-unit-id='bc-adm-01'] .adm-enable").click()
        await notice(page, saying="已启用")  # the screen is redrawn by then: the form below is the new one
        unit = await RawUnit(live.url, "bc-adm-01", new_token).connect()
        await unit.close()
        # A refusal is a sentence, never a code.
        await page.fill("#adm-unit-id", "bad id!")
        await page.click("#adm-unit-register")
        assert "单位编号格式不正确" in await notice(page, "error")

        # Users: reset a password (the session ends), change the role, disable, enable.
        li_session = await live.login("li")
        await show_admin(page, "users")
        user = page.locator("tr[data-username='li']")
        await user.locator(".adm-reset").click()
        await user.locator(".adm-new-password").fill(remember("li-new-pass-7"))
        await user.locator(".adm-reset-save").click()
        await notice(page)
        assert (await api(http, "GET", f"{live.url}/api/me", li_session))[0] == 401
        li_session = await live.login("li", "li-new-pass-7")
        await page.locator("tr[data-username='li'] select.adm-role").select_option("auditor")
        await notice(page, saying="角色已改为")
        status, me = await api(http, "GET", f"{live.url}/api/me", li_session)
        assert me["role"] == "auditor"
        await page.locator("tr[data-username='li'] .adm-disable").click()
        await page.wait_for_selector("tr[data-username='li'][data-disabled='true']")
        async with http.post(f"{live.url}/api/login", json={"username": "li", "password": "li-new-pass-7"}) as r:
            assert r.status == 401
        await page.locator("tr[data-username='li'] .adm-enable").click()
        await page.wait_for_selector("tr[data-username='li'][data-disabled='false']")
        await live.login("li", "li-new-pass-7")

        # Legal holds: set, then release with a reason (none: refused with a sentence).
        await show_admin(page, "holds")
        await page.fill("#adm-hold-case", CASE)
        await page.fill("#adm-hold-reason", "执行异议审查中")
        await page.click("#adm-hold-set")
        await notice(page)
        status, holds = await api(http, "GET", f"{live.url}/api/holds", admin)
        [hold] = holds["holds"]
        held = page.locator(f"tr[data-case-number='{hold['case_number']}']")
        await held.locator(".adm-release").click()
        await notice(page, "error")
        await held.locator(".adm-release-reason").fill("异议已驳回")
        await held.locator(".adm-release").click()
        await notice(page)
        status, holds = await api(http, "GET", f"{live.url}/api/holds", admin)
        assert holds["holds"] == []

        # Retention: the categories, a dry run (nothing is due on a new archive), no run offered.
        await show_admin(page, "retention")
        assert await page.locator("tr[data-category='standard']").count() == 1
        await page.click("#adm-ret-dry")
        await page.wait_for_selector("#adm-ret-summary[data-dry-run='true']")
        assert await page.locator("#adm-ret-run").is_disabled()

        # Audit: filtered by person and action family, and the same as a CSV file.
        await show_admin(page, "audit")
        await page.fill("#adm-audit-actor", "root")
        await page.select_option("#adm-audit-action", "user")
        await page.click("#adm-audit-search")
        # the rows shown answer this search (not the unfiltered list the screen opened with)
        await page.wait_for_selector("#adm-audit-results[data-query='actor=root&action=user'] tr[data-verb]")
        verbs = await page.locator("#adm-audit-results tr[data-verb]").evaluate_all(
            "(rows) => rows.map((r) => r.dataset.verb)")
        assert verbs == ["user.enabled", "user.disabled", "user.role_changed", "user.password_reset"], verbs
        async with page.expect_download() as info:
            await page.click("#adm-audit-csv")
        path = tmp_path / "audit.csv"
        await (await info.value).save_as(str(path))
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
        assert [r["verb"] for r in rows] == verbs
        status, trail = await api(http, "GET", f"{live.url}/api/audit?actor=root&action=unit", admin)
        assert [e["verb"] for e in reversed(trail["entries"])] == [
            "unit.token_rotated", "unit.disabled", "unit.enabled"]
        await context.close()

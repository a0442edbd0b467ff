"""已告知 on the field page (`/field`, Debian's Chromium): the officer marks the spoken notice of the
unit's running action over the unit's link; outside a running action the page says why not."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest

from tests.conftest import LiveServer
from tests.dispatch_server.test_actions import api
from tests.dispatch_server.test_compliance import SEIZURE, rules
from tests.support.browser import chromium
from tests.support.field_page import FieldPage, no_server_errors
from tests.support.unit_client import Console

WAIT_S = 20.0


async def test_the_officer_marks_the_notice_on_the_field_page(
        make_live: Any, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    live: LiveServer = await make_live(procedure=rules(notice_within_s=300))
    token = live.add_unit("bc-field")
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    try:
        async with chromium() as browser:
            fp = await FieldPage.open(browser, live.url, "bc-field", token)
            await fp.start(publishing=False)
            await fp.page.click("#notice-btn")
            refused = fp.page.locator("#notice-state[data-state='error'][data-code='not_in_running_action']")
            await refused.wait_for(timeout=WAIT_S * 1000)
            assert "不在进行中的行动中" in await refused.inner_text()

            _, action = await api(http, "POST", f"{live.url}/api/actions", op, {**SEIZURE, "units": ["bc-field"]})
            await api(http, "POST", f"{live.url}/api/actions/{action['id']}/start", op)
            assert await fp.page.locator("#notice-btn").inner_text() == "已告知"
            await fp.page.click("#notice-btn")
            sent = fp.page.locator("#notice-state[data-state='sent']")
            await sent.wait_for(timeout=WAIT_S * 1000)
            assert "已标记告知" in await sent.inner_text()
            pushed = await console.next("action_procedure", lambda c: c["action_id"] == action["id"] and c["notice"],
                                        timeout=WAIT_S)
            assert pushed["notice"]["unit_id"] == "bc-field" and pushed["notice"]["marked_by"] == "unit:bc-field"
            assert pushed["compliant"]
            _, record = await api(http, "GET", f"{live.url}/api/actions/{action['id']}/procedure", op)
            assert record["notice"] == pushed["notice"] and record["breaks"] == []
            fp.assert_no_js_errors()
            await fp.close()
    finally:
        await console.close()
    assert not no_server_errors(caplog.records)

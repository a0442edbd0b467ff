"""The wall shows, per running action, whether it complies with the rules of procedure right now
(流程预警): 违规：记录仪不足 while one unit records where two are required, 合规 once two do."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.conftest import OPERATOR_PASSWORD, LiveServer
from tests.dispatch_server.test_actions import api
from tests.dispatch_server.test_compliance import SEIZURE, rules
from tests.recordings.test_recorder import FAST, unpublish
from tests.support.browser import chromium, console_login
from tests.support.peers import make_publisher, whip_publish

WAIT_MS = 20_000


async def test_the_wall_shows_each_running_action_compliant_or_what_breaks(
        make_live: Any, http: aiohttp.ClientSession, vp8_loop: Any) -> None:
    live: LiveServer = await make_live(archive=FAST, procedure=rules(min_recorders=2))
    tokens = {u: live.add_unit(u) for u in ("bc-01", "bc-02")}
    live.add_user("op", "operator")
    op = await live.login("op")
    pubs = {u: await make_publisher(vp8_loop) for u in tokens}
    try:
        await whip_publish(http, live.url, "bc-01", tokens["bc-01"], pubs["bc-01"])
        _, action = await api(http, "POST", f"{live.url}/api/actions", op, SEIZURE)
        await api(http, "POST", f"{live.url}/api/actions/{action['id']}/start", op)
        badge = f".wall-group[data-action-id='{action['id']}'] .wall-group-compliance"
        async with chromium() as browser:
            page = await browser.new_page(bypass_csp=True)
            await console_login(page, live.url, "op", OPERATOR_PASSWORD)
            # Loaded with the actions: the action broke its rule before this console came.
            broken = page.locator(f"{badge}[data-compliant='false']")
            await broken.wait_for(timeout=WAIT_MS)
            assert await broken.inner_text() == "违规：记录仪不足"
            assert await broken.get_attribute("data-rules") == "min_recorders"

            # Pushed live: the second recorder makes it compliant, its stop breaks the rule again.
            await whip_publish(http, live.url, "bc-02", tokens["bc-02"], pubs["bc-02"])
            ok = page.locator(f"{badge}[data-compliant='true']")
            await ok.wait_for(timeout=WAIT_MS)
            assert await ok.inner_text() == "合规"
            await unpublish(http, live, pubs["bc-02"], tokens["bc-02"])
            await broken.wait_for(timeout=WAIT_MS)
            await page.click("#lang-btn")  # English on request
            await page.locator(f"{badge}:text-is('Breach: too few recorders')").wait_for(timeout=WAIT_MS)
    finally:
        for pub in pubs.values():
            await pub.close()

"""The operator console and the field page in headless Chromium against a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import OPERATOR_PASSWORD, LiveServer
from tests.support.browser import chromium, console_login, tile_frames, wait_tile_frames
from tests.support.peers import make_publisher, whip_publish
from tests.support.unit_client import RawUnit


async def test_field_page_publishes_and_console_shows_the_tile(live: LiveServer) -> None:
    token = live.add_unit("bc-07")
    live.add_user("op", "operator")
    async with chromium() as browser:
        field_ctx = await browser.new_context()
        field = await field_ctx.new_page()
        await field.goto(f"{live.url}/field")
        await field.fill("#unit-id", "bc-07")
        await field.fill("#unit-token", token)
        await field.click("#start-btn")
        await field.wait_for_selector("#field-state[data-state='live']", timeout=20_000)

        console_ctx = await browser.new_context()
        console = await console_ctx.new_page()
        await console_login(console, live.url, "op", OPERATOR_PASSWORD)
        await console.wait_for_selector("[data-unit-id='bc-07']", timeout=10_000)
        frames = await wait_tile_frames(console, "bc-07", 10, timeout_s=20)
        assert frames > 10
        live_tile = ".tile[data-unit-id='bc-07'][data-state='live'], [data-unit-id='bc-07'][data-state='live']"
        await console.wait_for_selector(live_tile, timeout=10_000)
        shot = Path(live.settings.data_dir) / "console.png"  # for people debugging a failure
        await console.screenshot(path=str(shot))

        # The field page stops: the console shows the tile offline, in place.
        await field.click("#stop-btn")
        await field.wait_for_selector("#field-state[data-state='idle']", timeout=10_000)
        await console.wait_for_selector("[data-unit-id='bc-07'][data-state='offline']", timeout=15_000)
        await field_ctx.close()
        await console_ctx.close()


async def test_wrong_token_on_field_page_shows_the_servers_reason(live: LiveServer) -> None:
    live.add_unit("bc-08")
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(f"{live.url}/field")
        await page.fill("#unit-id", "bc-08")
        await page.fill("#unit-token", "not-the-token")
        await page.click("#start-btn")
        await page.wait_for_selector("#field-state[data-state='error']", timeout=15_000)
        # Chinese on screen (the text for the error's code); the server's own sentence in the title.
        message = page.locator("#field-message")
        assert await message.get_attribute("data-code") == "bad_token"
        assert "令牌错误" in await message.inner_text()
        assert "wrong token" in (await message.get_attribute("title") or "")
        await page.wait_for_selector("#link-state[data-state='refused']", timeout=15_000)
        await page.click("#lang-btn")
        assert "wrong token" in (await message.inner_text()).lower()


async def test_console_login_rejects_bad_password_and_serves_no_external_assets(live: LiveServer) -> None:
    live.add_user("op", "operator")
    async with chromium() as browser:
        page = await browser.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        await page.goto(f"{live.url}/")
        await page.fill("#login-username", "op")
        await page.fill("#login-password", "wrong-password")
        await page.click("#login-submit")
        await page.wait_for_selector("#login-error:not([hidden])", timeout=10_000)
        assert await page.inner_text("#login-error") == "用户名或密码错误"  # the code's text, not the server's English
        await console_login(page, live.url, "op", OPERATOR_PASSWORD)
        external = [u for u in requests if not u.startswith(live.url) and not u.startswith(("data:", "blob:"))]
        assert not external, f"the console must work offline; it requested {external}"
        # The Chinese web font comes from this server, a few unicode-range subsets of ~100 at a time.
        await page.evaluate("() => document.fonts.ready")
        subsets = {u for u in requests if "/vendor/fonts/noto-sans-sc/files/" in u and u.endswith(".woff2")}
        assert 1 <= len(subsets) <= 40, sorted(subsets)
        loaded = await page.evaluate(
            "() => [...document.fonts].filter((f) => f.family.includes('Noto Sans SC') && f.status === 'loaded')"
            ".length")
        assert loaded >= 1
        assert await tile_frames(page, "nobody") == 0


async def test_field_page_sos_button_alarms_operators(live: LiveServer) -> None:
    from tests.support.unit_client import Console

    token = live.add_unit("bc-09")
    live.add_user("op", "operator")
    console = await Console(live.url, await live.login("op")).connect()
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(f"{live.url}/field")
        await page.fill("#unit-id", "bc-09")
        await page.fill("#unit-token", token)
        await page.click("#sos-btn")
        await page.wait_for_selector("#sos-state[data-state='sent']", timeout=10_000)
    alert = await console.next("alert", lambda a: a["kind"] == "sos" and a["unit_id"] == "bc-09")
    assert alert["state"] == "open"
    await console.close()


async def test_a_unit_with_video_but_no_instruction_link_says_it_cannot_hear(
    live: LiveServer, vp8_loop: Any, opus_loop: Any
) -> None:
    """WHIP alone brings the picture, not the instruction link: the roster and the tile say the
    unit cannot get instructions or talk-back, until its Socket.IO link comes up."""
    token = live.add_unit("bc-31")
    live.add_user("op31", "operator")
    pub = await make_publisher(vp8_loop, opus_loop)
    unit: RawUnit | None = None
    try:
        async with aiohttp.ClientSession() as http:
            await whip_publish(http, live.url, "bc-31", token, pub)
        async with chromium() as browser:
            page = await browser.new_page()
            await console_login(page, live.url, "op31", OPERATOR_PASSWORD)
            row = "#roster-body tr[data-unit-id='bc-31']"
            await page.wait_for_selector(f"{row}[data-status='publishing'][data-reachable='false'] .badge--nolink",
                                         timeout=20_000)
            assert await page.locator(f"{row} .badge--nolink").inner_text() == "无指令链路"
            await page.wait_for_selector(".tile[data-unit-id='bc-31'][data-reachable='false']", timeout=20_000)

            unit = await RawUnit(live.url, "bc-31", token).connect()
            await page.wait_for_selector(f"{row}[data-reachable='true']", timeout=20_000)
            assert await page.locator(f"{row} .badge--nolink").count() == 0
            await page.wait_for_selector(".tile[data-unit-id='bc-31'][data-reachable='true']", timeout=20_000)
    finally:
        if unit is not None:
            await unit.close()
        await pub.close()

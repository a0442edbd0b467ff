"""Every page works with the server's Content-Security-Policy in force (no inline script, no eval,
nothing from elsewhere): a violation is a console error, and fails the test."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import LiveServer
from tests.support.browser import chromium


@pytest.mark.parametrize("path, ready", [
    ("/", "#login-submit"),
    ("/field", "button"),
    ("/portal", "button"),
    ("/report/stats", "#report[data-state='error']"),  # no session here: it says to log in first
    ("/report/action?id=act-000000000000", "#report-login:not([hidden])"),
])
async def test_pages_run_under_the_content_security_policy(live: LiveServer, path: str, ready: str) -> None:
    violations: list[str] = []
    async with chromium() as browser:
        context = await browser.new_context(bypass_csp=False)
        page = await context.new_page()

        def note(message: Any) -> None:
            if "Content Security Policy" in message.text or "Refused to" in message.text:
                violations.append(message.text)

        page.on("console", note)
        page.on("pageerror", lambda error: violations.append(str(error)))
        await page.goto(f"{live.url}{path}")
        await page.wait_for_selector(ready, timeout=15_000)
        await page.evaluate("() => new Promise(r => setTimeout(r, 500))")  # late module errors surface
        await context.close()
    assert violations == []

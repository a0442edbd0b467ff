"""Headless Debian Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from playwright.async_api import Browser, BrowserContext, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream", "--autoplay-policy=no-user-gesture-required",
]


class TestBrowser:
    """The browser tests drive. Its pages bypass the server's Content-Security-Policy by default,
    because Playwright's ``wait_for_function`` evaluates its predicate with ``eval``, which the
    policy (rightly) forbids; ``tests/console/test_csp.py`` opens every page with the policy in
    force and fails on any violation."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser

    async def new_context(self, **options: Any) -> BrowserContext:
        options.setdefault("bypass_csp", True)
        return await self.browser.new_context(**options)

    async def new_page(self, **options: Any) -> Page:
        options.setdefault("bypass_csp", True)
        return await self.browser.new_page(**options)

    async def close(self) -> None:
        await self.browser.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.browser, name)


@asynccontextmanager
async def chromium() -> AsyncIterator[TestBrowser]:
    if not await asyncio.to_thread(os.path.exists, CHROMIUM):
        raise RuntimeError("Debian chromium is missing: run 'make test' (it installs it) or apt-get install chromium")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield TestBrowser(browser)
        finally:
            await browser.close()


async def console_login(page: Page, base: str, username: str, password: str) -> None:
    await page.goto(f"{base}/")
    await page.fill("#login-username", username)
    await page.fill("#login-password", password)
    await page.click("#login-submit")
    await page.wait_for_selector("#app:not([hidden])", timeout=10_000)
    await page.wait_for_function("window.dispatchConsole && window.dispatchConsole.roster", timeout=10_000)


async def portal_login(page: Page, base: str, case: str, code: str, party: str) -> None:
    """A party signs in to ``/portal`` with the case number and the access code the court gave them."""
    await page.goto(f"{base}/portal")
    await page.fill("#case-number", case)
    await page.fill("#access-code", code)
    await page.fill("#party-name", party)
    await page.click("#login-submit")
    await page.wait_for_selector("#portal-app:not([hidden])")


async def tile_frames(page: Page, unit_id: str) -> int:
    stats: Any = await page.evaluate(
        "async (u) => window.dispatchConsole.tiles.has(u) ? await window.dispatchConsole.stats(u) : null", unit_id
    )
    return int(stats["framesDecoded"]) if stats else 0


async def wait_tile_frames(page: Page, unit_id: str, more_than: int, timeout_s: float) -> int:
    """Wait until the console's tile for ``unit_id`` has decoded more than ``more_than`` frames.

    The polling runs inside the page (getStats is only observable by asking), so the test
    itself awaits one promise under a deadline.
    """
    frames = await page.evaluate(
        """async ([u, n, ms]) => {
            const c = window.dispatchConsole;
            const end = performance.now() + ms;
            let last = 0;
            while (performance.now() < end) {
                if (c.tiles.has(u)) {
                    const s = await c.stats(u);
                    last = s ? s.framesDecoded : 0;
                    if (last > n) return last;
                }
                await new Promise((r) => setTimeout(r, 100));
            }
            return -last - 1;
        }""",
        [unit_id, more_than, int(timeout_s * 1000)],
    )
    if frames < 0:
        raise AssertionError(f"tile {unit_id}: {-frames - 1} frames decoded after {timeout_s} s, wanted > {more_than}")
    return int(frames)

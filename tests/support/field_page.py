"""The field page (`/field`) in Debian's Chromium, as an officer's phone: a context with the fake
camera and microphone, geolocation granted at a given fix, and every JavaScript error collected
(uncaught exceptions, console errors and warnings) so that a test can fail on them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from playwright.async_api import BrowserContext, ConsoleMessage, Error, Geolocation, Page, ViewportSize

from tests.support.browser import TestBrowser

PHONE: ViewportSize = {"width": 360, "height": 740}
HOME: Geolocation = {"latitude": 38.0412, "longitude": 114.5105, "accuracy": 5}
HEARTBEAT_S = 20.0  # generous: the machine running the suite is shared and often loaded


@dataclass
class FieldPage:
    context: BrowserContext
    page: Page
    base: str
    unit_id: str
    token: str
    errors: list[str] = field(default_factory=list)
    # Console errors that a test expects (e.g. a websocket refused while offline), by pattern.
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    @classmethod
    async def open(cls, browser: TestBrowser, base: str, unit_id: str, token: str, *,
                   viewport: ViewportSize | None = None, geolocation: Geolocation | None = None,
                   locale: str = "zh-CN", init_script: str | None = None) -> FieldPage:
        context = await browser.new_context(
            viewport=viewport or PHONE, locale=locale, timezone_id="Asia/Shanghai",
            permissions=["geolocation", "camera", "microphone"],
            geolocation=geolocation or HOME,
        )
        if init_script is not None:
            await context.add_init_script(init_script)
        page = await context.new_page()
        fp = cls(context, page, base, unit_id, token)
        page.on("pageerror", fp._page_error)
        page.on("console", fp._console)
        await page.goto(f"{base}/field")
        return fp

    def _page_error(self, exc: Error) -> None:
        self.errors.append(f"pageerror: {exc}")

    def _console(self, msg: ConsoleMessage) -> None:
        # Warnings too: the page warns only when something it should handle went wrong.
        if msg.type not in ("error", "warning"):
            return
        text = f"{msg.text} ({msg.location.get('url', '')})"
        if not any(p.search(text) for p in self.allowed):
            self.errors.append(f"console.{msg.type}: {text}")

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def assert_no_js_errors(self) -> None:
        assert not self.errors, "the field page logged JavaScript errors:\n" + "\n".join(self.errors)

    async def start(self, publishing: bool = True) -> None:
        """Fill the form and tap 开始; wait for the link (and the publish) to be up."""
        await self.page.fill("#unit-id", self.unit_id)
        await self.page.fill("#unit-token", self.token)
        await self.page.click("#start-btn")
        await self.page.wait_for_selector("#link-state[data-state='online']", timeout=HEARTBEAT_S * 1000)
        if publishing:
            await self.page.wait_for_selector("#field-state[data-state='live']", timeout=HEARTBEAT_S * 1000)

    async def orders(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.page.evaluate("window.fieldPage.orders()")
        return result

    def card(self, instruction_id: str) -> str:
        return f"li.order[data-instruction-id='{instruction_id}']"

    async def wait_card(self, instruction_id: str, state: str | None = None, timeout_s: float = HEARTBEAT_S) -> None:
        selector = self.card(instruction_id) + (f"[data-state='{state}']" if state else "")
        await self.page.wait_for_selector(selector, timeout=timeout_s * 1000)

    async def wait_until(self, expression: str, arg: Any = None, timeout_s: float = HEARTBEAT_S) -> Any:
        """Wait for a JavaScript expression (a function of ``arg``) to be truthy; return its value."""
        handle = await self.page.wait_for_function(expression, arg=arg, timeout=timeout_s * 1000, polling=50)
        return await handle.json_value()

    async def poll(self, check: str, arg: Any = None, timeout_s: float = HEARTBEAT_S) -> Any:
        """Wait for an async JavaScript function of ``arg`` to return something truthy (e.g. from
        ``getStats()``, which only answers when asked); return it. The polling runs in the page."""
        found = await self.page.evaluate(
            f"""async (arg) => {{
                const check = {check};
                const end = performance.now() + {int(timeout_s * 1000)};
                for (;;) {{
                    const value = await check(arg);
                    if (value) return value;
                    if (performance.now() > end) return null;
                    await new Promise((resolve) => setTimeout(resolve, 50));
                }}
            }}""",
            arg,
        )
        assert found, f"not reached within {timeout_s} s: {check}"
        return found

    async def close(self) -> None:
        await self.context.close()


def no_server_errors(records: list[Any], ignore: Callable[[Any], bool] = lambda r: False) -> list[str]:
    """Server log records at ERROR or above (exceptions included), as lines for an assertion."""
    return [f"{r.name}: {r.getMessage()}" for r in records if r.levelno >= 40 and not ignore(r)]

"""Looking at the operator console as a person would: horizontal overflow, the text on screen in
one language, the share of the wall the tiles fill, and screenshots (kept under the test's
temporary directory; copied to ``docs/screenshots/`` when ``UPDATE_SCREENSHOTS=1``)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from playwright.async_api import Page

REPO = Path(__file__).resolve().parents[2]
DOCS_SHOTS = REPO / "docs" / "screenshots"

SIDE_TABS = ("roster-area", "map-panel", "actions-panel", "instructions-panel", "alerts-panel", "recordings-panel",
             "requests-panel")
ADMIN_TABS = ("units", "users", "audit", "holds", "retention")

# Latin words that may stand on a Chinese screen: units of measure, codecs, coordinate systems,
# the SOS mark, the CSV format, the language switch (named in its own language), keyboard keys.
LATIN_OK = {"SOS", "VP8", "VP9", "H264", "opus", "fps", "kbps", "GCJ", "WGS", "CSV", "English", "HTTPS", "JPEG",
            "Enter", "Esc"}
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
WORD = re.compile(r"[A-Za-z]{3,}")
# Machine ids on screen are data, not words: ins-3f2a..., al-9c0e..., fr-..., rec ids.
IDS = re.compile(r"\b[a-z]{2,4}-[0-9a-f]{6,}\b|\b[0-9a-f]{12,}\b")


async def overflow(page: Page) -> tuple[int, int]:
    """(document scroll width, window inner width): the first must not exceed the second."""
    got: Any = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    return int(got[0]), int(got[1])


async def assert_no_overflow(page: Page, where: str) -> None:
    width, inner = await overflow(page)
    if width > inner:
        culprits = await page.evaluate(
            """() => [...document.querySelectorAll('body *')].filter((e) => {
                const r = e.getBoundingClientRect();
                return r.width > 0 && r.right > window.innerWidth + 1 && getComputedStyle(e).position !== 'fixed';
            }).slice(0, 8).map((e) =>
                `${e.tagName}#${e.id}.${e.className} right=${Math.round(e.getBoundingClientRect().right)}`)""")
        raise AssertionError(f"{where}: the page is {width} px wide in a {inner} px window: {culprits}")


async def visible_text(page: Page) -> str:
    """What a person reads now: the rendered text of the page (hidden elements excluded)."""
    return str(await page.evaluate("() => document.body.innerText"))


def foreign_words(text: str, language: str, data: tuple[str, ...] = ()) -> list[str]:
    """Words of the other language on a screen: Latin words on a Chinese screen (ids, usernames,
    case numbers and other data in ``data`` removed first), Chinese characters on an English one."""
    for value in sorted(data, key=len, reverse=True):
        text = text.replace(value, " ")
    text = IDS.sub(" ", text).replace("中文", " ")  # the language switch names its language in it
    if language == "zh":
        return sorted({w for w in WORD.findall(text) if w not in LATIN_OK})
    return sorted(set(CJK.findall(text)))


async def shoot(page: Page, tmp: Path, name: str, *, keep: bool = False, full_page: bool = False) -> Path:
    """A screenshot under ``tmp`` (of the whole page with ``full_page``); with ``keep`` and
    ``UPDATE_SCREENSHOTS=1`` also ``docs/screenshots/console-<name>.png``."""
    path = tmp / f"console-{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    if keep and os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SHOTS / path.name)
    return path


async def wall_fill(page: Page) -> float:
    """The share of the wall's area that the tiles cover."""
    got: Any = await page.evaluate(
        """() => {
            const wall = document.getElementById('video-wall').getBoundingClientRect();
            let area = 0;
            for (const t of document.querySelectorAll('#video-wall .tile')) {
                const r = t.getBoundingClientRect();
                const w = Math.max(0, Math.min(r.right, wall.right) - Math.max(r.left, wall.left));
                const h = Math.max(0, Math.min(r.bottom, wall.bottom) - Math.max(r.top, wall.top));
                area += w * h;
            }
            return area / (wall.width * wall.height);
        }""")
    return float(got)


async def show_side_tab(page: Page, panel: str) -> None:
    await page.click(f"#side-tabs [data-panel='{panel}']")
    await page.wait_for_selector(f"#{panel}[data-active='true']", timeout=5_000)


async def show_admin(page: Page, tab: str) -> None:
    if await page.locator("#admin-view").is_hidden():
        await page.click("#admin-toggle")
    await page.click(f"#admin-tabs [data-admin='{tab}']")
    await page.wait_for_selector(f"#admin-body[data-screen='{tab}'] .adm-screen > :not(.muted)", timeout=10_000)

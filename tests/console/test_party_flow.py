"""The whole party flow in headless Chromium: the party asks in the portal, a supervisor approves,
draws a blur region anywhere on the review frame (it fits the panel), exports, watches the export
and releases it in the console; the party signs in again later with the same code, downloads, and
the package verifies offline with dispatch-audit and with the second verifier the portal offers."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from field_client.encoded_loop import EncodedAudioLoop, EncodedLoop
from tests.conftest import OPERATOR_PASSWORD, LiveServer
from tests.dispatch_server.test_party import CASE, record_action
from tests.recordings.test_recorder import FAST
from tests.support.browser import chromium, console_login, portal_login

AUDIT = str(Path(sys.executable).parent / "dispatch-audit")


def verify_export(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AUDIT, "verify-export", str(path)], capture_output=True, text=True, timeout=120)


async def test_party_requests_supervisor_approves_party_downloads_and_verifies(
        make_live: Any, http: aiohttp.ClientSession, vp8_loop: EncodedLoop, opus_loop: EncodedAudioLoop,
        tmp_path: Path) -> None:
    live: LiveServer = await make_live(archive=FAST)
    action_id, _ = await record_action(live, http, vp8_loop, opus_loop)
    async with chromium() as browser:
        court = await (await browser.new_context(bypass_csp=True)).new_page()  # wait_for_function evaluates strings
        await console_login(court, live.url, "judge", OPERATOR_PASSWORD)
        await court.click("[data-panel='requests-panel']")
        await court.fill("#code-case", CASE)
        await court.fill("#code-party", "张三")
        await court.click("#code-issue")
        await court.wait_for_selector("#code-out[data-code]")
        code = await court.get_attribute("#code-out", "data-code")
        assert code

        ctx = await browser.new_context(accept_downloads=True, bypass_csp=True)
        portal = await ctx.new_page()
        # ASCII brackets are fine, the code's case does not matter, spaces around the name neither
        await portal_login(portal, live.url, "(2026)冀0916执123号", code.lower(), " 张三 ")
        await portal.select_option("#request-action", action_id)
        await portal.fill("#request-reason", "核实查封过程")
        await portal.click("#request-submit")
        await portal.wait_for_selector(".portal-request[data-state='pending']")
        phone = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                          bypass_csp=True)
        on_phone = await phone.new_page()  # the party's phone: the form and the list fit, no sideways scrolling
        await portal_login(on_phone, live.url, CASE, code, "张三")
        await on_phone.wait_for_selector(".portal-request[data-state='pending']")
        # a court's action titles can be long
        long_title = "查封被执行人名下位于某市某区某路的厂房、车辆及生产设备（查封扣押，已结束）"
        await on_phone.evaluate(f"document.querySelector('#request-action').add(new Option('{long_title}', 'long'), 0)")
        cut = await on_phone.evaluate(  # (the body hides what overflows sideways: look at each element's edge)
            "[...document.querySelectorAll('.portal *')].filter(e => e.getBoundingClientRect().right > innerWidth + 1)"
            ".map(e => e.tagName + '#' + e.id)")
        assert cut == [], f"cut off at the right edge of a 390 px phone: {cut}"
        scrolled = await on_phone.evaluate("() => { window.scrollTo(0, 1e6); return scrollY; }")
        assert scrolled > 0, "the page scrolls as a document on a phone (the last card can be reached)"
        await phone.close()

        await court.wait_for_selector(".request-row[data-state='pending']", timeout=10_000)
        await court.click(".request-row[data-state='pending']")
        await court.wait_for_selector("#request-detail .decision-approve")
        await court.fill("#decision-reason", "依法公开")
        await court.click("#request-detail .decision-approve")
        await court.wait_for_selector("#request-detail[data-state='approved'] #review-load")
        await court.fill("#review-time", "1")
        await court.click("#review-load")
        await court.wait_for_function("document.querySelector('#review-info').textContent.includes('T+')")
        # The whole frame fits the panel: a region drawn into its bottom-right corner (which used to
        # be cut off) is kept, in video pixels.
        await court.wait_for_function("document.querySelector('#review-canvas').width === 640")
        canvas = court.locator("#review-canvas")
        await canvas.scroll_into_view_if_needed()
        box = await canvas.bounding_box()
        assert box is not None
        panel = await court.locator("#requests-panel").bounding_box()
        assert panel is not None and box["x"] + box["width"] <= panel["x"] + panel["width"] + 1
        assert abs(box["width"] / box["height"] - 640 / 480) < 0.02, box
        await court.mouse.move(box["x"] + box["width"] * 0.80, box["y"] + box["height"] * 0.80)
        await court.mouse.down()
        await court.mouse.move(box["x"] + box["width"] * 0.97, box["y"] + box["height"] * 0.97)
        await court.mouse.up()
        [region] = await court.evaluate("window.dispatchConsole.requests.regions()")
        assert region["x"] >= 500 and region["y"] >= 370 and region["x"] + region["w"] <= 640, region
        assert region["y"] + region["h"] <= 480, region
        await court.click("#export-start")
        await court.wait_for_selector("#request-detail[data-state='review'] #export-preview", timeout=90_000)
        # The supervisor watches the redacted, watermarked export, then releases it.
        await court.wait_for_function(
            "(() => { const v = document.querySelector('#export-preview'); return v && v.readyState >= 2; })()",
            timeout=20_000)
        await court.click("#export-release:not([disabled])")
        await court.wait_for_selector("#request-detail[data-state='ready']", timeout=10_000)

        await portal.wait_for_selector(".portal-request[data-state='ready'] .download-link", timeout=10_000)
        # The party comes back another day, in a new browser session, with the same code.
        await ctx.close()
        ctx = await browser.new_context(accept_downloads=True, bypass_csp=True)
        portal = await ctx.new_page()
        await portal_login(portal, live.url, CASE, code, "张三")
        await portal.wait_for_selector(".portal-request[data-state='ready'] .download-link", timeout=10_000)
        async with portal.expect_download() as info:
            await portal.click(".download-link")
        download = await info.value
        package = tmp_path / "package.zip"
        await download.save_as(str(package))
        await portal.click(".watch-btn")
        await portal.wait_for_function(
            "(() => { const v = document.querySelector('.portal-request video');"
            " return v && v.readyState >= 1 && v.duration > 1; })()",
            timeout=20_000)

    out = verify_export(package)
    assert out.returncode == 0, out.stdout + out.stderr
    async with http.get(f"{live.url}/portal/dispatch_verify.py") as r:
        verifier = tmp_path / "dispatch_verify.py"
        verifier.write_bytes(await r.read())
    second = await asyncio.to_thread(subprocess.run, [sys.executable, "-S", "-I", str(verifier), "package",
                                                      str(package)], capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    # One flipped byte anywhere makes the verifier fail.
    data = bytearray(package.read_bytes())
    rng = random.Random(7)
    for _ in range(5):
        tampered = bytearray(data)
        i = rng.randrange(len(tampered))
        tampered[i] ^= 1 << rng.randrange(8)
        bad = tmp_path / "tampered.zip"
        bad.write_bytes(bytes(tampered))
        out = verify_export(bad)
        assert out.returncode == 1, f"flip at byte {i} of {len(data)} went unnoticed:\n{out.stdout}"

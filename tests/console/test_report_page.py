"""The per-action report page (/report/action?id=) in headless Chromium against a real server and a
real ``field-client``: reached from the action's card, it shows the map with the unit's track,
the coverage timeline and the tables (times in the court's zone), prints to an A4 PDF of one to a
few pages, and tells an operator in Chinese that the report is not theirs to read. The page runs
with the server's Content-Security-Policy in force."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.conftest import OPERATOR_PASSWORD, LiveServer
from tests.dispatch_server.test_action_report import HERE, publishing, state_of, until
from tests.dispatch_server.test_actions import api
from tests.recordings.archive_support import of_type
from tests.recordings.test_recorder import ArchiveEvents
from tests.support.browser import chromium, console_login
from tests.support.console_page import shoot, show_side_tab
from tests.support.processes import Process
from tests.support.unit_client import Console

ARCHIVE = {"segment_s": 2.0, "reconnect_grace_s": 30.0, "sign_interval_s": 5.0, "min_free_bytes": 0}
ACTION = {
    "case_number": "(2026)冀0916执88号", "title": "搜查 某小区 3 号楼", "type": "search",
    "address": "石家庄市 某小区 3 号楼", "area": {"type": "circle", "lat": HERE[0], "lon": HERE[1], "radius_m": 250},
    "planned_at": "2026-12-02T02:30:00Z", "officers": ["王法警"], "judge": "李法官",
}


async def report_state(page: Page, state: str, problems: list[str]) -> None:
    """Wait for the page to reach ``state`` (``body[data-report]``); on a timeout, say where it is."""
    try:
        await page.wait_for_selector(f"body[data-report='{state}']", timeout=20_000)
    except PlaywrightTimeout:
        now = await page.get_attribute("body", "data-report")
        message = await page.inner_text("#report-message")
        raise AssertionError(f"report page is {now!r}, not {state!r}: {message!r}; errors: {problems}") from None


def pdf_pages(pdf: bytes) -> int:
    """The page count of the PDF's page tree (Chromium writes its dictionaries uncompressed)."""
    counts = [int(n) for n in re.findall(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)", pdf)]
    counts += [int(n) for n in re.findall(rb"/Count\s+(\d+)[^>]*?/Type\s*/Pages\b", pdf)]
    return max(counts) if counts else len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf))


@pytest.mark.timeout(300)
async def test_the_report_page_shows_map_timeline_and_tables_and_prints_to_a4(
    make_live: Any, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    live: LiveServer = await make_live(archive=ARCHIVE)
    events = ArchiveEvents(live)
    archive = live.settings.archive_dir
    token = live.add_unit("bc-p1")
    live.add_unit("veh-p2", "vehicle")  # in the team, never connected: one recorder where two are required
    live.add_user("op", "operator")
    live.add_user("sup", "supervisor")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    unit = await Process.start("-m", "field_client", "--server", live.url, "--unit", "bc-p1", "--token", token,
                               "--size", "320x240", "--fps", "15", "--gps", f"sim:{HERE[0]},{HERE[1]},60",
                               "--auto-ack")
    try:
        await publishing(console, "bc-p1")
        team = {**ACTION, "units": ["bc-p1", "veh-p2"]}
        status, action = await api(http, "POST", f"{live.url}/api/actions", op, team)
        assert status == 201, action
        aid = action["id"]
        await api(http, "POST", f"{live.url}/api/actions/{aid}/start", op)

        def rids() -> set[str]:
            return {d["recording_id"] for d in of_type(archive, "recording_opened") if d.get("action_id") == aid}

        await until(lambda: sum(1 for k, d in events.seen if k == "sealed" and d["recording_id"] in rids()) >= 3,
                    what="three sealed segments of the action")
        status, sent = await api(http, "POST", f"{live.url}/api/instructions", op,
                                 {"unit": "bc-p1", "type": "text", "text": "请在 3 号楼门口待命"})
        assert status == 201, sent
        await state_of(console, sent["id"], "acknowledged")
        status, ended = await api(http, "POST", f"{live.url}/api/actions/{aid}/end", op)
        assert status == 200, ended
        await until(lambda: rids() <= {d["recording_id"] for k, d in events.seen if k == "closed"},
                    what="the action's recording closed")
    finally:
        await unit.stop()
        await console.close()
    sup = await live.login("sup")
    status, report = await api(http, "GET", f"{live.url}/api/actions/{aid}/report", sup)
    assert status == 200, report
    segments = [s for r in report["evidence"]["recordings"] for s in r["segments"]]
    assert len(segments) >= 3 and report["coverage"]["shortfalls"]

    async with chromium() as browser:
        context = await browser.new_context(bypass_csp=False, viewport={"width": 1366, "height": 768})
        page = await context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))

        # From the action's card in the console (same tab: the session stays in it).
        await console_login(page, live.url, "sup", OPERATOR_PASSWORD)
        await show_side_tab(page, "actions-panel")
        await page.check("#actions-show-ended")
        link = page.locator(f".action-card[data-action-id='{aid}'] a.action-report")
        await link.wait_for(state="visible", timeout=10_000)
        assert await link.get_attribute("href") == f"/report/action?id={aid}"
        assert (await link.inner_text()).strip() == "行动报告"
        # It opens a tab of its own that has the console's session (no login asked).
        async with context.expect_page() as opened:
            await link.click()
        console_page = page
        page = await opened.value
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: requests.append(r.url))
        await report_state(page, "ready", problems)
        assert page.url == f"{live.url}/report/action?id={aid}"
        await page.set_viewport_size({"width": 1366, "height": 768})
        await console_page.close()

        # header: the court, the case, times in the court's zone (UTC+8), never a UTC "Z"
        head = await page.inner_text(".sheet-head")
        assert live.settings.procedure.court_name in head and "（2026）冀0916执88号" in head
        times = await page.inner_text("#r-times")
        assert report["times"]["local"]["started_at"] in times and report["times"]["local"]["ended_at"] in times
        assert "2026-12-02 10:30:00" in times  # planned 02:30 UTC
        assert "Z" not in times
        # the map: the unit's track line and the action's area, drawn by Leaflet without tiles
        assert await page.get_attribute("#report-map", "data-tiles") == "false"
        assert await page.get_attribute("#report-map", "data-tracks") == "1"
        assert await page.locator("#report-map path.report-track").count() == 1
        d = await page.get_attribute("#report-map path.report-track", "d") or ""
        assert len(re.findall(r"[ML]", d)) >= 3, d
        assert await page.locator("#report-map path.report-area").count() == 1
        box = await page.locator("#report-map").bounding_box()
        assert box and box["width"] > 500 and box["height"] > 200, box
        # the timeline: recorded stretches of the unit, and the shortfall (one recorder of two)
        assert await page.locator("#r-timeline rect.tl-recorded").count() >= 1
        assert await page.locator("#r-timeline rect.tl-short").count() == len(report["coverage"]["shortfalls"])
        assert "veh-p2" in await page.inner_text("#r-timeline")
        # the tables
        rows = page.locator(".report-table--instructions tbody tr")
        assert await rows.count() == 1
        row = await rows.first.inner_text()
        assert "请在 3 号楼门口待命" in row and "已确认" in row
        hashes = await page.locator(".report-table--evidence td.hash").all_inner_texts()
        assert sorted(h.strip() for h in hashes) == sorted(s["sha256"] for s in segments)
        shortfalls = report["coverage"]["shortfalls"]
        listed = [s for s in shortfalls if s["seconds"] >= 0.05]
        assert await page.locator(".report-table--shortfalls tbody tr").count() == len(listed)
        tiny = page.locator(".report-tiny-shortfalls")
        if len(listed) < len(shortfalls):  # under a tenth of a second: summed up in a line, not listed as 0.0 s
            assert f"{len(shortfalls) - len(listed)} 段" in await tiny.inner_text()
        else:
            assert await tiny.is_hidden()
        generated = await page.inner_text("#r-generated")
        assert re.search(r"生成时间 \d{4}-\d{2}-\d{2} \d{2}:\d{2}", generated), generated
        assert "无录像中断" in await page.inner_text("#r-gaps")
        # the live rule check's breaks (the vehicle never recorded), each with its statement
        breaks = page.locator(".report-table--rule-breaks tbody tr")
        assert report["rule_breaks"] and await breaks.count() == len(report["rule_breaks"])
        assert report["rule_breaks"][0]["statement"] in await breaks.first.inner_text()

        await shoot(page, tmp_path, "report", keep=True, full_page=True)
        # CSV of a table: Chinese headings, the court's times
        async with page.expect_download() as got:
            await page.click("[data-table='instructions'] button.csv")
        csv_path = tmp_path / "instructions.csv"
        await (await got.value).save_as(csv_path)
        csv = csv_path.read_text(encoding="utf-8-sig")
        assert csv.splitlines()[0].startswith("下达时间,单位,类型,内容,状态")
        assert "请在 3 号楼门口待命" in csv and "Z" not in csv.splitlines()[1]

        # print: A4, one to a few pages, not blank
        pdf = await page.pdf(format="A4", print_background=True)
        (tmp_path / "report.pdf").write_bytes(pdf)
        assert pdf.startswith(b"%PDF") and len(pdf) > 30_000, len(pdf)
        assert 1 <= pdf_pages(pdf) <= 3, pdf_pages(pdf)
        box_pt = re.search(rb"/MediaBox\s*\[\s*0\s+0\s+([0-9.]+)\s+([0-9.]+)\s*\]", pdf)
        assert box_pt and abs(float(box_pt[1]) - 595.3) < 2 and abs(float(box_pt[2]) - 841.9) < 2, "an A4 page"
        assert not [u for u in requests if not u.startswith(live.url) and not u.startswith(("data:", "blob:"))]
        assert problems == [], problems

        # an operator runs actions but does not read their reports: 403, said in Chinese
        other = await browser.new_context(bypass_csp=False, viewport={"width": 1366, "height": 768})
        op_page = await other.new_page()
        await console_login(op_page, live.url, "op", OPERATOR_PASSWORD)
        await show_side_tab(op_page, "actions-panel")
        await op_page.check("#actions-show-ended")
        await op_page.wait_for_selector(f".action-card[data-action-id='{aid}']", timeout=10_000)
        assert not await op_page.locator(f".action-card[data-action-id='{aid}'] a.action-report").is_visible()
        await op_page.goto(live.url + f"/report/action?id={aid}")
        await report_state(op_page, "forbidden", [])
        message = await op_page.inner_text("#report-message")
        assert "无权查看行动报告" in message, message
        assert await op_page.locator("#report").is_hidden()
        await other.close()
        await context.close()
    status, body = await api(http, "GET", f"{live.url}/api/actions/{aid}/report", op)
    assert status == 403 and body["error"]["code"] == "forbidden", body

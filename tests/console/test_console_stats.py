"""The 统计 tab in headless Chromium: a supervisor opens it, the ECharts charts draw, a figure
drills down to the actions behind it (each linking to its report), CSV and XLSX download and read
back (csv, openpyxl) with the API's numbers, and the printable report prints to a PDF whose text
carries the court's name and the period. An operator has no such tab and gets 403."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
from pypdf import PdfReader

from tests.conftest import OPERATOR_PASSWORD, LiveServer
from tests.dispatch_server.test_actions import api
from tests.dispatch_server.test_statistics import CASE, check_files_match, csv_tables, xlsx_tables
from tests.support.browser import chromium, console_login

ZONE = ZoneInfo("Asia/Shanghai")

# Pixels of a canvas that are drawn on (not transparent): ECharts drew the chart.
DRAWN = """(sel) => {
  const c = document.querySelector(sel);
  if (!c) return 0;
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n += 1;
  return n;
}"""


async def history(live: LiveServer, http: aiohttp.ClientSession) -> dict[str, str]:
    """A seizure that ran and ended, a search cancelled, an eviction planned, an instruction that expired."""
    live.add_unit("bc-01")
    live.add_user("op", "operator")
    op = await live.login("op")
    ids = {}
    for kind, units in (("seizure", ["bc-01"]), ("search", []), ("eviction", [])):
        status, a = await api(http, "POST", f"{live.url}/api/actions", op,
                              {"case_number": CASE, "title": f"{kind} 行动", "type": kind, "units": units,
                               "judge": "李法官"})
        assert status == 201, a
        ids[kind] = a["id"]
    await api(http, "POST", f"{live.url}/api/actions/{ids['seizure']}/start", op)
    status, _ = await api(http, "POST", f"{live.url}/api/instructions", op,
                          {"unit": "bc-01", "type": "text", "text": "注意", "ttl_s": 0.2})
    assert status == 201
    await api(http, "POST", f"{live.url}/api/actions/{ids['seizure']}/end", op)
    await api(http, "POST", f"{live.url}/api/actions/{ids['search']}/cancel", op)
    return ids


async def test_supervisor_charts_drills_down_downloads_and_prints_statistics(
        live: LiveServer, http: aiohttp.ClientSession) -> None:
    ids = await history(live, http)
    live.add_user("sup", "supervisor")
    sup = await live.login("sup")
    today = datetime.now(ZONE).date()
    first, last = str(today - timedelta(days=1)), str(today + timedelta(days=1))
    query = f"period=custom&from={first}&to={last}&group=type"
    async with chromium() as browser:
        context = await browser.new_context(accept_downloads=True, viewport={"width": 1920, "height": 1080})
        page = await context.new_page()
        await console_login(page, live.url, "sup", OPERATOR_PASSWORD)
        narrow = await page.evaluate("document.getElementById('side').getBoundingClientRect().width")
        await page.click("[data-panel='stats-panel']")
        await page.wait_for_selector(".stats-view[data-view='actions'] canvas", timeout=15_000)
        # The figures get room: the side column widens while the tab is open, and the picker shows
        # the day counted (today in the court's zone).
        wide = await page.evaluate("document.getElementById('side').getBoundingClientRect().width")
        assert wide > 1000 and wide > 2 * narrow, (narrow, wide)
        assert await page.input_value("#stats-date") == str(today)
        chart_w = await page.evaluate("document.querySelector(\".stats-view[data-view='actions'] .stats-chart "
                                      "canvas\").getBoundingClientRect().width")
        assert chart_w > 900, chart_w
        await page.select_option("#stats-period", "custom")
        await page.fill("#stats-from", first)
        await page.fill("#stats-to", last)
        await page.click("#stats-load")
        cell = ".stats-view[data-view='actions'] tr[data-key='seizure'] td[data-col='stats_col_planned']"
        await page.wait_for_selector(f"{cell}:has-text('1')", timeout=15_000)
        for view in ("actions", "recording", "instructions", "alerts", "requests"):
            canvas = f".stats-view[data-view='{view}'] .stats-chart canvas"
            await page.wait_for_selector(canvas)
            assert await page.evaluate(DRAWN, canvas) > 500, f"the {view} chart drew nothing"
        assert await page.locator(".stats-view[data-view='evidence'] table").count() == 1

        status, stats = await api(http, "GET", f"{live.url}/api/stats?{query}", sup)
        assert status == 200
        shown = await page.evaluate("() => window.dispatchConsole.statistics.data")
        assert shown["totals"] == stats["totals"] and shown["groups"] == stats["groups"]

        # drill down: the cancelled search, linked to its report
        await page.click(".stats-view[data-view='actions'] tr[data-key='search'] button[data-figure='cancelled']")
        item = page.locator(f"#stats-drill li[data-action-id='{ids['search']}']")
        await item.wait_for(timeout=10_000)
        assert await item.locator("a").get_attribute("href") == f"/report/action?id={ids['search']}"
        assert await page.locator("#stats-drill li").count() == 1
        await page.click(".stats-view[data-view='instructions'] tr[data-key='*'] button[data-figure='expired']")
        await page.locator(f"#stats-drill li[data-action-id='{ids['seizure']}']").wait_for(timeout=10_000)

        files: dict[str, bytes] = {}
        for fmt in ("csv", "xlsx"):
            async with page.expect_download() as info:
                await page.click(f"#stats-{fmt}")
            download = await info.value
            assert download.suggested_filename.endswith(f".{fmt}")
            path = await download.path()
            assert path is not None
            files[fmt] = path.read_bytes()
        assert files["csv"].startswith("\ufeff".encode())
        check_files_match(stats, csv_tables(files["csv"].decode("utf-8-sig")))
        check_files_match(stats, xlsx_tables(files["xlsx"]))

        # the printable report, then a PDF of it
        await page.goto(f"{live.url}/report/stats?{query}")
        await page.wait_for_selector("#report[data-state='ready']", timeout=15_000)
        await page.emulate_media(media="print")
        assert not await page.locator(".report-actions").is_visible(), "the print button does not print"
        pdf = await page.pdf(format="A4", print_background=True)
        text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
        squeezed = "".join(text.split())
        assert live.settings.procedure.court_name in squeezed, text[:300]
        assert f"{first}—{last}" in squeezed and "汇总统计" in squeezed, text[:300]
        assert "合计" in squeezed

        # an operator: no 统计 tab, and the API refuses; but a planned action is cancelled with its button
        operator = await (await browser.new_context()).new_page()
        await console_login(operator, live.url, "op", OPERATOR_PASSWORD)
        assert await operator.locator("[data-panel='stats-panel']").is_hidden()
        assert await operator.locator("[data-panel='requests-panel']").is_hidden()
        op = await live.login("op")
        status, _ = await api(http, "GET", f"{live.url}/api/stats", op)
        assert status == 403
        await operator.click("[data-panel='actions-panel']")
        card = operator.locator(f".action-card[data-action-id='{ids['eviction']}']")
        await card.locator(".action-cancel").click()
        await card.wait_for(state="detached", timeout=10_000)  # a cancelled action leaves the list, as an ended one
        _, eviction = await api(http, "GET", f"{live.url}/api/actions/{ids['eviction']}", op)
        assert eviction["state"] == "cancelled" and eviction["cancelled_at"]
        await context.close()



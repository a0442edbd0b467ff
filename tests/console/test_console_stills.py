"""Stills in the operator console (headless Chromium): a snapshot instruction's still appears as a
thumbnail as soon as the archive has it (the ``snapshot`` push), stays once the instruction is done
(its ``result``, also after a reload), and opens full size; each load is a ``viewed`` ledger entry."""

from __future__ import annotations

import aiohttp
import cv2
import numpy as np

from tests.conftest import OPERATOR_PASSWORD, LiveServer
from tests.dispatch_server.test_actions import api
from tests.recordings.archive_support import entries
from tests.support.browser import chromium, console_login
from tests.support.unit_client import RawUnit

LOADED = """([iid, sid]) => {
    const img = document.querySelector(
        `li.instr[data-instruction-id='${iid}'] button.still-thumb[data-snapshot-id='${sid}'] img`);
    return img !== null && img.complete && img.naturalWidth === 320 && img.naturalHeight === 240;
}"""


def still() -> bytes:
    image = np.zeros((240, 320, 3), dtype=np.uint8)
    cv2.circle(image, (160, 120), 80, (0, 200, 255), -1)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return bytes(data.tobytes())


async def test_a_snapshot_instructions_still_shows_as_a_thumbnail_that_opens_full_size(
        live: LiveServer, http: aiohttp.ClientSession) -> None:
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    op = await live.login("op")
    unit = await RawUnit(live.url, "bc-01", token).connect()
    try:
        async with chromium() as browser:
            page = await browser.new_page()
            await console_login(page, live.url, "op", OPERATOR_PASSWORD)
            await page.click("#side-tabs [data-panel='instructions-panel']")
            status, created = await api(http, "POST", f"{live.url}/api/instructions", op,
                                        {"unit": "bc-01", "type": "snapshot"})
            assert status == 201, created
            iid = created["id"]
            await unit.call("received", {"ids": [iid]})
            await unit.call("instruction_state", {"id": iid, "state": "acknowledged"})
            await page.wait_for_selector(f"li.instr[data-instruction-id='{iid}'][data-state='acknowledged']",
                                         timeout=10_000)

            async with http.post(f"{live.url}/api/units/bc-01/snapshots", data=still(), params={"instruction": iid},
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"}) as r:
                assert r.status == 201
                stored = await r.json()
            sid = stored["snapshot_id"]
            await page.wait_for_function(LOADED, arg=[iid, sid], timeout=10_000)  # the push, before done

            result = {k: stored[k] for k in ("snapshot_id", "sha256", "bytes")}
            await unit.call("instruction_state", {"id": iid, "state": "done", "result": result})
            await page.wait_for_selector(f"li.instr[data-instruction-id='{iid}'][data-state='done']", timeout=10_000)
            await page.wait_for_function(LOADED, arg=[iid, sid], timeout=10_000)
            await page.click(f"li.instr[data-instruction-id='{iid}'] button.still-thumb")
            await page.wait_for_function(
                """(sid) => {
                    const d = document.querySelector(`dialog.still-viewer[open][data-snapshot-id='${sid}']`);
                    const img = d && d.querySelector('img');
                    return img !== null && img.complete && img.naturalWidth === 320;
                }""", arg=sid, timeout=10_000)
            assert "取证照片" in await page.inner_text("dialog.still-viewer")

            # After a reload the instruction's result brings the thumbnail back.
            await page.reload()
            await page.wait_for_function(LOADED, arg=[iid, sid], timeout=15_000)
    finally:
        await unit.close()
    viewed = [e for e in entries(live.settings.archive_dir)
              if e["type"] == "viewed" and e["data"].get("snapshot_id") == sid]
    assert [(e["actor"], e["outcome"]) for e in viewed] == [("user:op", "ok")] * 2, "one load per console page"

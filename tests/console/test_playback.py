"""Playback of a recording in the console (headless Chromium, real server): a recording with a
gap (the publisher drops for ~3 s and returns within the reconnect grace), its timeline showing
the gap, playback carrying on across a segment boundary, seeking, and the map marker following
the unit's GPS track in step with the video; the spoken notice (已告知) as a timeline marker."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from playwright.async_api import Page

from dispatch_server.appkeys import POSITIONS
from field_client.encoded_loop import EncodedAudioLoop, EncodedLoop
from geo.fix import Fix
from geo.track import TrackPoint
from tests.conftest import OPERATOR_PASSWORD, LiveServer
from tests.recordings.test_recorder import FAST, ArchiveEvents, stop_sending, unpublish
from tests.support.browser import chromium, console_login
from tests.support.peers import Publisher, make_publisher, whip_publish


async def publish(http: aiohttp.ClientSession, live: LiveServer, unit: str, token: str, vp8: EncodedLoop,
                  opus: EncodedAudioLoop) -> Publisher:
    """Publish, retrying while the server still holds the unit's previous (dropped) session."""
    pub = await make_publisher(vp8, opus)
    deadline = time.monotonic() + 10
    while True:
        try:
            await whip_publish(http, live.url, unit, token, pub)
            return pub
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


async def state(page: Page) -> Any:
    return await page.evaluate("window.dispatchConsole.playback.state()")


async def wait_state(page: Page, condition: str, timeout_ms: int = 15_000) -> Any:
    """Wait until ``condition`` (a JS expression over ``s`` = state()) holds; returns the state."""
    try:
        await page.wait_for_function(
            f"(() => {{ const s = window.dispatchConsole.playback.state(); return {condition}; }})()",
            timeout=timeout_ms)
    except Exception as exc:
        raise AssertionError(f"playback never reached {condition}: {await state(page)}") from exc
    return await state(page)


async def test_recording_with_a_gap_plays_across_segments_seeks_and_moves_the_map_marker(
        make_live: Any, http: aiohttp.ClientSession, vp8_loop: EncodedLoop, opus_loop: EncodedAudioLoop) -> None:
    live: LiveServer = await make_live(archive={**FAST, "reconnect_grace_s": 60.0})
    events = ArchiveEvents(live)
    token = live.add_unit("bc-31")
    live.add_user("op", "operator")
    started = time.time()
    first = await publish(http, live, "bc-31", token, vp8_loop, opus_loop)
    await events.wait("sealed", 1)
    await first.close()  # the link drops without a goodbye
    await asyncio.sleep(3.0)  # the length of the outage under test
    before = len([k for k, _ in events.seen if k == "sealed"])  # the drop sealed the segment it cut
    second = await publish(http, live, "bc-31", token, vp8_loop, opus_loop)
    await events.wait("sealed", before + 1)
    await stop_sending(second)
    await unpublish(http, live, second, token)
    await second.close()
    await events.wait("sealed", before + 2)
    rid = events.seen[0][1]["recording_id"]
    # The unit walks east along a street while it records: one fix every half second.
    points = [TrackPoint("bc-31", Fix(38.0431, 114.5100 + 0.00002 * i, started - 5 + 0.5 * i))
              for i in range(int((time.time() - started + 10) * 2))]
    live.app[POSITIONS].tracks.insert_many(points)

    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1400, "height": 900}, bypass_csp=True)  # see wait_state
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await console_login(page, live.url, "op", OPERATOR_PASSWORD)
        await page.click("#side-tabs [data-panel='recordings-panel']")
        item = page.locator(f".pb-item[data-recording-id='{rid}'] button")
        await item.wait_for(timeout=10_000)
        await item.click()

        s = await wait_state(page, f"s.recording === '{rid}' && s.playing && s.segment === 1")
        [gap] = s["gaps"]
        assert gap["cause"] == "link_lost" and 2.0 <= gap["end_s"] - gap["start_s"] <= 10.0, gap
        drawn = page.locator(".pb-gap[data-cause='link_lost']")
        assert await drawn.count() == 1
        assert "信号中断" in (await drawn.get_attribute("title") or "")  # the cause's text, not its code
        box, line = await drawn.bounding_box(), await page.locator(".pb-timeline").bounding_box()
        assert box and line and box["width"] > 0 and line["x"] < box["x"] < line["x"] + line["width"]
        early = s["position"]
        assert early is not None

        segments = s["segments"]
        assert len(segments) >= 3 and [g["seq"] for g in segments] == list(range(1, len(segments) + 1))
        after_gap = next(g for g in segments if g["offset_s"] >= gap["end_s"] - 0.5)
        assert after_gap["seq"] >= 2

        # Segment 1 ends: playback carries on through the next segments and across the gap.
        s = await wait_state(page, f"s.segment >= {after_gap['seq']} && s.playing", timeout_ms=20_000)
        assert s["time"] >= after_gap["offset_s"] - 0.1

        # Seek back into segment 1, then into the gap (plays from the next segment's start), then further on.
        await page.evaluate("window.dispatchConsole.playback.seek(1.0)")
        s = await wait_state(page, "s.segment === 1 && s.time >= 1.0 && s.time < 2.5")
        await page.evaluate(f"window.dispatchConsole.playback.seek({(gap['start_s'] + gap['end_s']) / 2})")
        s = await wait_state(page, f"s.segment === {after_gap['seq']} && s.time >= {after_gap['offset_s'] - 0.1}")
        target = after_gap["offset_s"] + 1.0
        await page.evaluate(f"window.dispatchConsole.playback.seek({target})")
        s = await wait_state(page, f"s.segment === {after_gap['seq']} && s.time >= {target - 0.3} && s.playing")
        later = await wait_state(page, f"s.time > {s['time'] + 0.3}")
        assert later["position"] is not None and later["position"][1] > early[1], "the marker moved east with time"
        marker = await page.evaluate(
            "(() => { const m = document.querySelector('.pb-map .leaflet-interactive'); return !!m; })()")
        assert marker, "the track and marker are drawn on the playback map"
        assert errors == []


async def test_the_spoken_notice_is_a_marker_on_the_timeline(
        make_live: Any, http: aiohttp.ClientSession, vp8_loop: EncodedLoop, opus_loop: EncodedAudioLoop) -> None:
    from tests.dispatch_server.test_actions import api
    from tests.dispatch_server.test_compliance import SEIZURE, rules
    from tests.support.unit_client import RawUnit

    live: LiveServer = await make_live(archive=FAST, procedure=rules(notice_within_s=300))
    events = ArchiveEvents(live)
    token = live.add_unit("bc-41")
    live.add_user("op", "operator")
    op = await live.login("op")
    _, action = await api(http, "POST", f"{live.url}/api/actions", op, {**SEIZURE, "units": ["bc-41"]})
    await api(http, "POST", f"{live.url}/api/actions/{action['id']}/start", op)
    pub = await publish(http, live, "bc-41", token, vp8_loop, opus_loop)
    unit = await RawUnit(live.url, "bc-41", token).connect()
    try:
        await events.wait("sealed", 1)
        assert (await unit.call("notice", {"officer": "王法警"}))["ok"]
        await events.wait("sealed", 2)
    finally:
        await unit.close()
        await stop_sending(pub)
        await unpublish(http, live, pub, token)
        await pub.close()
    rid = events.seen[0][1]["recording_id"]

    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1400, "height": 900}, bypass_csp=True)  # see wait_state
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await console_login(page, live.url, "op", OPERATOR_PASSWORD)
        await page.click("#side-tabs [data-panel='recordings-panel']")
        item = page.locator(f".pb-item[data-recording-id='{rid}'] button")
        await item.wait_for(timeout=10_000)
        await item.click()
        s = await wait_state(page, f"s.recording === '{rid}' && s.markers.length === 1")
        [marker] = s["markers"]
        assert marker["kind"] == "notice" and 0 < marker["t"] < s["duration"]
        tick = page.locator(".pb-marker[data-kind='notice']")
        assert await tick.count() == 1
        assert (await tick.get_attribute("title") or "").startswith("已告知 ") and "王法警" in (
            await tick.get_attribute("title") or "")
        box, line = await tick.bounding_box(), await page.locator(".pb-timeline").bounding_box()
        assert box and line and line["x"] < box["x"] < line["x"] + line["width"]
        assert errors == []

"""The field page runs the whole field loop in Chromium against a real server: it publishes, shows
instructions as cards and answers them, carries out machine orders, sends and back-fills GPS
fixes, plays talk-back, speaks Chinese (or English) and fits a phone, a body camera and a desktop.

Each test drives Debian's Chromium (fake camera and microphone, geolocation granted) and real
aiortc peers on the operator's side, and fails if the server logged an error or the page a
JavaScript error. Nothing reconnects in between, except in the test about reconnecting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiortc import RTCSessionDescription
from playwright.async_api import Geolocation, ViewportSize

from field_client.encoded_loop import AudioLoopSpec, EncodedAudioLoop
from tests.conftest import LiveServer
from tests.dispatch_server.test_actions import ACTION, api
from tests.support.browser import chromium
from tests.support.field_page import FieldPage, no_server_errors
from tests.support.peers import make_publisher, make_viewer, whep_view
from tests.support.unit_client import Console

WITHIN_S = 1.0  # the console sees an answer, the page an instruction, within a second
WAIT_S = 20.0  # how long to wait for anything before failing (a loaded 2-core machine)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


async def _units(http: aiohttp.ClientSession, base: str, token: str) -> dict[str, dict[str, Any]]:
    status, body = await api(http, "GET", f"{base}/api/units", token)
    assert status == 200, body
    return {u["id"]: u for u in body["units"]}


async def _until(check: Any, timeout_s: float = WAIT_S, what: str = "condition") -> Any:
    """Await ``check()`` until it returns something truthy (polling a server API)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout_s} s (last: {value!r})")
        await asyncio.sleep(0.1)


async def _instruct(http: aiohttp.ClientSession, base: str, token: str, **body: Any) -> str:
    status, created = await api(http, "POST", f"{base}/api/instructions", token, body)
    assert status == 201, created
    return str(created["id"])


async def _instruction(http: aiohttp.ClientSession, base: str, token: str, iid: str) -> dict[str, Any]:
    status, ins = await api(http, "GET", f"{base}/api/instructions/{iid}", token)
    assert status == 200, ins
    return dict(ins)


class Env:
    """One server, one unit, an operator with an HTTP session and a console socket."""

    def __init__(self, live: LiveServer, http: aiohttp.ClientSession, unit_id: str) -> None:
        self.live = live
        self.url = live.url
        self.http = http
        self.unit_id = unit_id
        self.unit_token = live.add_unit(unit_id)
        live.add_user("op", "operator")
        self.op = ""
        self.console: Console | None = None

    async def setup(self) -> Env:
        self.op = await self.live.login("op")
        self.console = await Console(self.url, self.op).connect()
        return self

    async def instruct(self, **body: Any) -> str:
        return await _instruct(self.http, self.url, self.op, unit=self.unit_id, **body)

    async def instruction(self, iid: str) -> dict[str, Any]:
        return await _instruction(self.http, self.url, self.op, iid)

    async def update(self, iid: str, state: str, timeout_s: float = WAIT_S) -> dict[str, Any]:
        assert self.console is not None
        return await self.console.next("instruction_update", lambda d: d["id"] == iid and d["state"] == state,
                                       timeout=timeout_s)

    async def close(self) -> None:
        if self.console is not None:
            await self.console.close()


@pytest.fixture
async def env(make_live: Any, http: aiohttp.ClientSession) -> AsyncIterator[Env]:
    live: LiveServer = await make_live(alerts={"sweep_interval_s": 0.1})
    e = await Env(live, http, "bc-field").setup()
    yield e
    await e.close()


async def _timed(coro: Any) -> tuple[Any, float]:
    started = time.monotonic()
    value = await coro
    return value, time.monotonic() - started


async def test_page_publishes_and_the_officer_answers_instructions(
    env: Env, server_log: pytest.LogCaptureFixture
) -> None:
    async with chromium() as browser:
        fp = await FieldPage.open(browser, env.url, env.unit_id, env.unit_token)
        await fp.start()

        # An operator's WHEP viewer gets the page's frames; the roster shows the unit live.
        viewer = await make_viewer()
        await whep_view(env.http, env.url, env.unit_id, env.op, viewer)
        await viewer.wait_frames(10, timeout=WAIT_S)
        await viewer.close()
        units = await _units(env.http, env.url, env.op)
        assert units[env.unit_id]["online"] and units[env.unit_id]["publishing"]

        # A text instruction: the card is there within a second of the POST.
        started = time.monotonic()
        first = await env.instruct(type="text", text="到三号门集合", priority="high")
        await fp.wait_card(first, "delivered")
        shown_after = time.monotonic() - started
        assert shown_after <= WITHIN_S, f"the card took {shown_after:.2f} s"
        assert (await env.instruction(first))["state"] == "delivered"
        card = fp.page.locator(fp.card(first))
        text = await card.inner_text()
        assert "文字指令" in text and "到三号门集合" in text and "优先级：高" in text
        assert re.search(r"接收时间：\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", text), text
        await fp.wait_until("window.fieldPage.beeps >= 1")  # the beep (once the AudioContext runs)

        # 确认, then 完成: the console hears of each within a second, the API agrees.
        await card.locator("button[data-action='ack']").click()
        update, took = await _timed(env.update(first, "acknowledged"))
        assert took <= WITHIN_S, f"acknowledged reached the console after {took:.2f} s"
        assert (await env.instruction(first))["state"] == "acknowledged"
        await card.locator("button[data-action='done']").click()
        update, took = await _timed(env.update(first, "done"))
        assert took <= WITHIN_S, f"done reached the console after {took:.2f} s"
        assert (await env.instruction(first))["state"] == "done"
        await fp.wait_card(first, "done")

        # A second one is refused: not without a reason, then with the reason typed in the card.
        second = await env.instruct(type="text", text="进入二楼搜查")
        await fp.wait_card(second, "delivered")
        card = fp.page.locator(fp.card(second))
        await card.locator("button[data-action='refuse']").click()
        await card.locator(".order-send-refusal").click()
        await card.locator(".order-refuse-error").wait_for(state="visible", timeout=WAIT_S * 1000)
        assert (await env.instruction(second))["state"] == "delivered"
        await card.locator(".order-reason").fill("现场有危险品，需等待支援")
        await card.locator(".order-send-refusal").click()
        update, took = await _timed(env.update(second, "refused"))
        assert took <= WITHIN_S, f"refused reached the console after {took:.2f} s"
        assert update["reason"] == "现场有危险品，需等待支援"
        ins = await env.instruction(second)
        assert ins["state"] == "refused" and ins["reason"] == "现场有危险品，需等待支援"
        await fp.wait_card(second, "refused")
        assert await fp.page.evaluate("window.fieldPage.linkConnects") == 1  # nothing reconnected
        fp.assert_no_js_errors()
        await fp.close()
    assert not no_server_errors(server_log.records)


async def test_instruction_nobody_answers_raises_ack_overdue(
    env: Env, server_log: pytest.LogCaptureFixture
) -> None:
    assert env.console is not None
    async with chromium() as browser:
        fp = await FieldPage.open(browser, env.url, env.unit_id, env.unit_token)
        await fp.start(publishing=False)
        iid = await env.instruct(type="text", text="请回复", ack_deadline_s=2)
        await fp.wait_card(iid, "delivered")
        alert = await env.console.next(
            "alert", lambda a: a["kind"] == "ack_overdue" and a["instruction_id"] == iid, timeout=WAIT_S)
        assert alert["unit_id"] == env.unit_id
        assert (await env.instruction(iid))["state"] == "delivered"
        assert await fp.page.evaluate("window.fieldPage.linkConnects") == 1
        fp.assert_no_js_errors()
        await fp.close()
    assert not no_server_errors(server_log.records)


async def _snapshot_route_exists(env: Env) -> bool:
    async with env.http.get(f"{env.url}/api/openapi.json") as r:
        assert r.status == 200
        paths = (await r.json())["paths"]
    return any(re.fullmatch(r"/api/units/\{[^}]+\}/snapshots", p) for p in paths)


async def test_page_carries_out_machine_orders(env: Env, server_log: pytest.LogCaptureFixture) -> None:
    assert env.console is not None
    async with chromium() as browser:
        fp = await FieldPage.open(browser, env.url, env.unit_id, env.unit_token)
        await fp.start()

        async def publishing(want: bool) -> bool:
            return bool((await _units(env.http, env.url, env.op))[env.unit_id]["publishing"]) == want

        # record_stop: the page stops publishing, the server sees it, the order is done.
        stop = await env.instruct(type="record_stop")
        await env.update(stop, "done")
        await fp.page.wait_for_selector("#field-state[data-state='idle']", timeout=WAIT_S * 1000)
        ins = await env.instruction(stop)
        assert ins["state"] == "done" and ins["result"] == {"publishing": False}
        await _until(lambda: publishing(False), what="the unit stops publishing")
        await fp.wait_card(stop, "done")

        # record_start: publishing again, done.
        start = await env.instruct(type="record_start")
        await env.update(start, "done")
        await fp.page.wait_for_selector("#field-state[data-state='live']", timeout=WAIT_S * 1000)
        assert (await env.instruction(start))["result"] == {"publishing": True}
        await _until(lambda: publishing(True), what="the unit publishes again")

        # callback: the console is told to listen to the unit.
        callback = await env.instruct(type="callback")
        event = await env.console.next("unit_callback", lambda d: d["instruction_id"] == callback, timeout=WAIT_S)
        assert event["unit_id"] == env.unit_id
        await env.update(callback, "done")

        # snapshot: uploaded when this server has the endpoint, else refused with the server's reason.
        snapshot = await env.instruct(type="snapshot")
        if await _snapshot_route_exists(env):
            await env.update(snapshot, "done")
            ins = await env.instruction(snapshot)
            assert ins["result"]["snapshot_id"] and ins["result"]["bytes"] > 1000
        else:
            fp.allow(r"Failed to load resource: the server responded with a status of 404 .*/snapshots")
            await env.update(snapshot, "refused")
            ins = await env.instruction(snapshot)
            assert "照片上传失败" in ins["reason"] and "404" in ins["reason"], ins["reason"]
            await fp.wait_card(snapshot, "refused")
        assert await fp.page.evaluate("window.fieldPage.linkConnects") == 1
        fp.assert_no_js_errors()
        await fp.close()
    assert not no_server_errors(server_log.records)


NO_CAMERA = """navigator.mediaDevices.getUserMedia = () =>
  Promise.reject(new DOMException('Requested device not found', 'NotFoundError'));"""


async def test_a_unit_without_a_camera_refuses_what_needs_one(
    env: Env, server_log: pytest.LogCaptureFixture
) -> None:
    async with chromium() as browser:
        fp = await FieldPage.open(browser, env.url, env.unit_id, env.unit_token, init_script=NO_CAMERA)
        await fp.start(publishing=False)
        # No camera: the page says so, and the link, instructions and GPS work all the same.
        assert "无法打开摄像头" in await fp.page.inner_text("#field-message")
        await fp.page.wait_for_selector("#gps-state[data-state='fix']", timeout=WAIT_S * 1000)
        for kind in ("snapshot", "record_start"):
            iid = await env.instruct(type=kind)
            update = await env.update(iid, "refused")
            assert update["reason"].startswith("本机没有可用的摄像头 no usable camera on this unit"), update["reason"]
            await fp.wait_card(iid, "refused")
            assert "本机没有可用的摄像头" in await fp.page.locator(fp.card(iid)).inner_text()
        told = await env.instruct(type="text", text="原地待命")
        await fp.wait_card(told, "delivered")
        await fp.page.locator(fp.card(told)).locator("button[data-action='ack']").click()
        await env.update(told, "acknowledged")
        fp.assert_no_js_errors()
        await fp.close()
    assert not no_server_errors(server_log.records)


async def _track(env: Env) -> list[dict[str, Any]]:
    status, doc = await api(env.http, "GET", f"{env.url}/api/units/{env.unit_id}/track", env.op)
    assert status == 200, doc
    return [f["properties"] | {"lon": f["geometry"]["coordinates"][0], "lat": f["geometry"]["coordinates"][1]}
            for f in doc["features"] if f["geometry"]["type"] == "Point"]


async def test_link_loss_backfills_fixes_and_sends_what_was_answered_offline(
    env: Env, server_log: pytest.LogCaptureFixture
) -> None:
    """Also: answers given while the link is down are sent in order when it is back, and an
    instruction queued meanwhile is picked up by the sync after the reconnect."""
    assert env.console is not None
    home: Geolocation = {"latitude": 38.0412, "longitude": 114.5105, "accuracy": 8}
    async with chromium() as browser:
        fp = await FieldPage.open(browser, env.url, env.unit_id, env.unit_token, geolocation=home)
        await fp.start()
        await fp.page.wait_for_selector("#gps-state[data-state='fix']", timeout=WAIT_S * 1000)
        assert "精度 8 米" in await fp.page.inner_text("#gps-state")

        async def moved() -> Any:
            pos = (await _units(env.http, env.url, env.op))[env.unit_id]["position"]
            return pos if pos and abs(pos["lat"] - 38.0412) < 1e-6 else None

        position = await _until(moved, what="the unit's position on /api/units")
        assert abs(position["lon"] - 114.5105) < 1e-6 and position["accuracy"] == 8
        before = await env.instruct(type="text", text="到达后报告")
        await fp.wait_card(before, "delivered")

        # The link drops; the officer walks on; the fixes are kept and come back with their times.
        fp.allow(r"WebSocket connection to .* failed")
        fp.allow(r"net::ERR_INTERNET_DISCONNECTED")
        await fp.context.set_offline(True)
        await fp.page.wait_for_selector("#link-state:not([data-state='online'])", timeout=WAIT_S * 1000)
        walked = []
        for k in range(1, 4):
            spot: Geolocation = {"latitude": 38.0412 + k * 0.001, "longitude": 114.5105 + k * 0.001, "accuracy": 6}
            await fp.context.set_geolocation(spot)
            fix = await fp.wait_until("(lat) => { const f = window.fieldPage.gps.last; "
                                      "return f && Math.abs(f.lat - lat) < 1e-9 && f; }", spot["latitude"])
            walked.append(fix)
        assert await fp.page.evaluate("window.fieldPage.gps.buffered") >= 3
        assert await fp.page.evaluate("window.fieldPage.link") in ("reconnecting", "connecting")
        # The officer answers offline: 确认 and 完成 wait, in order, and the card says so.
        card = fp.page.locator(fp.card(before))
        await card.locator("button[data-action='done']").click()
        assert await fp.page.evaluate("window.fieldPage.answersQueued") == 2
        assert "离线，联网后发送" in await card.inner_text()
        during = await env.instruct(type="text", text="离线期间的指令")
        await fp.context.set_offline(False)
        await fp.page.wait_for_selector("#link-state[data-state='online']", timeout=WAIT_S * 1000)
        await env.update(before, "acknowledged")
        await env.update(before, "done")
        assert (await env.instruction(before))["state"] == "done"
        await fp.wait_card(during, "delivered")
        assert (await env.instruction(during))["state"] == "delivered"
        await fp.wait_until("window.fieldPage.answersQueued === 0")

        async def backfilled() -> Any:
            track = await _track(env)
            found = [p for p in track if any(abs(p["ts"] - f["ts"]) < 1e-3 for f in walked)]
            return track if len(found) == len(walked) else None

        track = await _until(backfilled, what="the offline fixes in the track")
        for fix in walked:
            point = next(p for p in track if abs(p["ts"] - fix["ts"]) < 1e-3)
            assert abs(point["lat"] - fix["lat"]) < 1e-9 and abs(point["lon"] - fix["lon"]) < 1e-9
        await fp.wait_until("window.fieldPage.gps.buffered === 0")
        latest = await _until(moved_to(env, walked[-1]["lat"]), what="the newest fix as the live position")
        assert abs(latest["lon"] - walked[-1]["lon"]) < 1e-9
        fp.assert_no_js_errors()
        await fp.close()
    assert not no_server_errors(server_log.records)


def moved_to(env: Env, lat: float) -> Any:
    async def check() -> Any:
        pos = (await _units(env.http, env.url, env.op))[env.unit_id]["position"]
        return pos if pos and abs(pos["lat"] - lat) < 1e-9 else None

    return check


TONE_HZ = 1000.0
# Inside the page: the received talk-back stream's loudest frequency, measured with an AnalyserNode.
LOUDEST_HZ = """async () => {
  const talk = window.fieldPage.talk;
  const ctx = new AudioContext();
  await ctx.resume();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0;
  ctx.createMediaStreamSource(talk.stream).connect(analyser);
  const bins = new Float32Array(analyser.frequencyBinCount);
  const hz = (i) => (i * ctx.sampleRate) / analyser.fftSize;
  let best = { hz: 0, db: -Infinity };
  const end = performance.now() + 15000;
  while (performance.now() < end) {
    await new Promise((r) => setTimeout(r, 200));
    analyser.getFloatFrequencyData(bins);
    let peak = 1;
    for (let i = 2; i < bins.length; i += 1) if (bins[i] > bins[peak]) peak = i;
    best = { hz: hz(peak), db: bins[peak] };
    if (best.db > -60 && Math.abs(best.hz - 1000) < 50) break;
  }
  await ctx.close();
  return best;
}"""
INBOUND_AUDIO = """async () => {
  const pc = window.fieldPage.talk.pc;
  if (!pc) return { packets: 0, samples: 0 };
  const stats = await pc.getStats();
  for (const s of stats.values()) {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      return { packets: s.packetsReceived || 0, samples: s.totalSamplesReceived || 0 };
    }
  }
  return { packets: 0, samples: 0 };
}"""


async def test_talk_back_is_heard_on_the_page(env: Env, server_log: pytest.LogCaptureFixture) -> None:
    tone = await asyncio.to_thread(EncodedAudioLoop.build, AudioLoopSpec(frequency_hz=TONE_HZ))
    async with chromium() as browser:
        fp = await FieldPage.open(browser, env.url, env.unit_id, env.unit_token)
        await fp.start()
        mic = await make_publisher(None, tone)
        headers = {"Authorization": f"Bearer {env.op}", "Content-Type": "application/sdp"}
        async with env.http.post(f"{env.url}/api/talk/{env.unit_id}", data=mic.pc.localDescription.sdp,
                                 headers=headers) as r:
            assert r.status == 201, await r.text()
            location = r.headers["Location"]
            answer = await r.text()
        await mic.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

        await fp.page.wait_for_selector("#talk-state[data-state='live']", timeout=WAIT_S * 1000)
        assert await fp.page.inner_text("#talk-state") == "对讲中（op）"
        more_than = f"async (n) => {{ const s = await ({INBOUND_AUDIO})(); return s.packets > n && s; }}"
        first = await fp.poll(more_than, 10)
        later = await fp.poll(more_than, first["packets"] + 25)  # half a second more of 20 ms packets
        assert later["samples"] > first["samples"]
        loudest = await fp.page.evaluate(LOUDEST_HZ)
        assert abs(loudest["hz"] - TONE_HZ) < 50 and loudest["db"] > -60, loudest
        assert await fp.page.evaluate("document.getElementById('talk-audio').srcObject !== null")

        async with env.http.delete(f"{env.url}{location}", headers={"Authorization": f"Bearer {env.op}"}) as r:
            assert r.status == 200
        await fp.page.wait_for_selector("#talk-state[data-state='idle']", state="attached",
                                        timeout=WAIT_S * 1000)
        assert await fp.page.evaluate("window.fieldPage.talk.pc === null")
        await mic.close()
        assert await fp.page.evaluate("window.fieldPage.linkConnects") == 1
        fp.assert_no_js_errors()
        await fp.close()
    assert not no_server_errors(server_log.records)


LATIN_WORD = re.compile(r"[A-Za-z]+")
MEASURES = {"m", "km"}  # units of measure may stay Latin in Chinese text
CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")


async def _running_action(env: Env) -> dict[str, Any]:
    status, action = await api(env.http, "POST", f"{env.url}/api/actions", env.op, ACTION | {"units": [env.unit_id]})
    assert status == 201, action
    status, action = await api(env.http, "POST", f"{env.url}/api/actions/{action['id']}/start", env.op)
    assert status == 200, action
    return dict(action)


async def test_page_speaks_chinese_by_default_and_english_on_request(
    env: Env, server_log: pytest.LogCaptureFixture
) -> None:
    action = await _running_action(env)  # so that the cards carry a case number
    async with chromium() as browser:
        fp = await FieldPage.open(browser, env.url, env.unit_id, env.unit_token, locale="en-US")
        await fp.start()
        await fp.page.wait_for_selector("#gps-state[data-state='fix']", timeout=WAIT_S * 1000)
        told = await env.instruct(type="text", text="到三号门集合", priority="urgent")
        sent = await env.instruct(type="goto", lat=38.0500, lon=114.5200, note="前往东门")
        await fp.wait_card(told, "delivered")
        await fp.wait_card(sent, "delivered")
        await fp.page.locator(fp.card(sent)).locator("button[data-action='refuse']").click()

        # Chinese, even in an English-speaking browser: no Latin word but the unit id and units.
        assert await fp.page.evaluate("window.fieldPage.language") == "zh"
        chinese = await fp.page.evaluate("document.body.innerText")
        words = set(LATIN_WORD.findall(chinese.replace(env.unit_id, "")))
        assert words <= MEASURES, f"Latin words on the Chinese screen: {sorted(words - MEASURES)}\n{chinese}"
        for expected in ("链路", "在线", "直播中", "精度 5 米", "文字指令", "前往指定地点", "优先级：紧急",
                         f"案号：{action['case_number']}", "距离", "方位", "在地图中打开", "发送拒绝",
                         "一键求助"):
            assert expected in chinese, expected
        goto = fp.page.locator(fp.card(sent))
        assert (await goto.locator(".order-map").get_attribute("href") or "").startswith("geo:38.050000,114.520000")

        # English: every text switches; only what the command room wrote stays Chinese.
        await fp.page.click("#lang-btn")
        english = await fp.page.evaluate("document.body.innerText")
        for data in (action["case_number"], "到三号门集合", "前往东门"):
            english = english.replace(data, "")
        assert not CJK.search(english), f"Chinese left on the English screen: {CJK.findall(english)}\n{english}"
        for expected in ("Link", "online", "live", "accuracy 5 m", "Text instruction", "Go to a place",
                         "Priority: urgent", "Case: ", "Open in maps", "Send refusal", "SOS", "Chinese"):
            assert expected in english, expected
        assert await fp.page.evaluate("document.documentElement.lang") == "en"

        # The choice is remembered.
        await fp.page.click("#stop-btn")
        await fp.page.reload()
        await fp.page.wait_for_function("window.fieldPage !== undefined", timeout=WAIT_S * 1000)
        assert await fp.page.inner_text("#start-btn") == "Start"
        await fp.page.click("#lang-btn")
        assert await fp.page.inner_text("#start-btn") == "开始"
        fp.assert_no_js_errors()
        await fp.close()
    assert not no_server_errors(server_log.records)


SIZES: dict[str, ViewportSize] = {"phone": {"width": 360, "height": 740}, "bodycam": {"width": 320, "height": 480},
         "desktop": {"width": 1366, "height": 768}}


async def test_layout_fits_a_phone_a_body_camera_and_a_desktop(
    env: Env, server_log: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    await _running_action(env)
    await env.instruct(type="text", priority="high", text="请前往三号楼二单元，核对被执行人身份证件后开始查封登记，"
                       "注意保护现场。联系人电话13800000000，备用频道CH-07-ALPHA-BRAVO-CHARLIE-DELTA-ECHO。")
    await env.instruct(type="goto", lat=38.0500, lon=114.5200, note="前往东门")
    async with chromium() as browser:
        for name, viewport in SIZES.items():
            fp = await FieldPage.open(browser, env.url, env.unit_id, env.unit_token, viewport=viewport)
            await fp.start()
            await fp.page.wait_for_selector("#gps-state[data-state='fix']", timeout=WAIT_S * 1000)
            await fp.page.wait_for_function("window.fieldPage.orders().length === 2", timeout=WAIT_S * 1000)
            fits = "document.documentElement.scrollWidth <= window.innerWidth"
            assert await fp.page.evaluate(fits), f"{name}: the page scrolls sideways"
            # Touch targets: every visible button is at least 44 px tall.
            small = await fp.page.evaluate("""() => [...document.querySelectorAll('button, a.btn')]
                .filter((b) => b.offsetParent !== null && b.getBoundingClientRect().height < 44)
                .map((b) => b.id || b.className)""")
            assert not small, f"{name}: buttons too small to tap: {small}"
            shot = tmp_path / f"field-{name}.png"
            await fp.page.screenshot(path=str(shot))
            if os.environ.get("UPDATE_SCREENSHOTS") == "1":
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(shot, SCREENSHOTS / shot.name)
            # The refusal form open on the long card still fits.
            first = (await fp.orders())[-1]["id"]
            await fp.page.locator(fp.card(first)).locator("button[data-action='refuse']").click()
            assert await fp.page.evaluate(fits), f"{name}: the open refusal form scrolls sideways"
            await fp.page.click("#stop-btn")
            await fp.page.wait_for_selector("#link-state[data-state='offline']", timeout=WAIT_S * 1000)
            fp.assert_no_js_errors()
            await fp.close()
    assert not no_server_errors(server_log.records)

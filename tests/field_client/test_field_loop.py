"""The field loop as the people in it run it, live: an operator instructs, a `field-client`
process on a connected unit gets the order at once, the officer answers at the unit's terminal,
machine orders are carried out, talk-back is heard.

Every unit here stays connected from start to finish: each test asserts the client connected
exactly once, so nothing passes because a reconnect re-synced what the live path missed. Every
client's output is checked for tracebacks and unawaited coroutines when it stops.
"""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCSessionDescription

from field_client.encoded_loop import AudioLoopSpec, EncodedAudioLoop
from tests.conftest import LiveServer
from tests.dispatch_server.test_actions import ACTION, api
from tests.support.peers import make_publisher
from tests.support.processes import Process
from tests.support.unit_client import Console

DELIVERY_S = 1.0  # a connected unit gets a new instruction within a second (issue #12)


async def field_client(live: LiveServer, unit: str, token: str, *extra: str, tty: bool = False) -> Process:
    return await Process.start("-m", "field_client", "--server", live.url, "--unit", unit, "--token", token,
                               "--size", "320x240", *extra, tty=tty)


async def connected(client: Process) -> None:
    await client.line_with("link connected", timeout=60)


def once_connected(client: Process) -> None:
    assert client.count("link connected") == 1, "the unit must not have reconnected:\n" + client.output()


async def state_of(console: Console, instruction_id: str, state: str, timeout: float = 10) -> dict[str, Any]:
    return await console.next("instruction_update", lambda u: u["id"] == instruction_id and u["state"] == state,
                              timeout=timeout)


def seconds_between(ins: dict[str, Any], first: str, then: str) -> float:
    from utctime import parse_iso

    return parse_iso(ins[then]) - parse_iso(ins[first])


async def instruct(http: aiohttp.ClientSession, live: LiveServer, op: str, **body: Any) -> dict[str, Any]:
    status, created = await api(http, "POST", f"{live.url}/api/instructions", op, body)
    assert status == 201, created
    return dict(created)


async def get_instruction(http: aiohttp.ClientSession, live: LiveServer, op: str, iid: str) -> dict[str, Any]:
    status, ins = await api(http, "GET", f"{live.url}/api/instructions/{iid}", op)
    assert status == 200, ins
    return dict(ins)


@pytest.mark.timeout(120)
async def test_officer_at_the_terminal_gets_an_order_at_once_and_answers_it(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    token = live.add_unit("veh-01", "vehicle")
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    unit = await field_client(live, "veh-01", token, "--video", "none", "--audio", "none", "--gps", "none", tty=True)
    try:
        await connected(unit)
        first = await instruct(http, live, op, unit="veh-01", type="text", text="请到南门集合", priority="urgent")
        delivered = await state_of(console, first["id"], "delivered")
        # The server's own clock: queued → delivered (push, sync, received) within a second.
        assert delivered["created_at"] and delivered["delivered_at"]
        ins = await get_instruction(http, live, op, first["id"])
        assert ins["state"] == "delivered", "nobody has answered yet: delivery is not acknowledgement"
        shown = await unit.line_with("新指令 New instruction #1")
        assert "紧急 urgent" in shown and "文字指令 / text" in shown
        await unit.line_with("内容 Text: 请到南门集合")
        await unit.line_with("a=确认 acknowledge")

        unit.type("a")
        await state_of(console, first["id"], "acknowledged")
        unit.type("d")
        done = await state_of(console, first["id"], "done")
        assert done["acknowledged_at"] and done["done_at"]

        second = await instruct(http, live, op, unit="veh-01", type="goto", lat=38.05, lon=114.52, note="封控现场")
        await state_of(console, second["id"], "delivered")
        await unit.line_with("目标 Target: 38.050000, 114.520000")
        await unit.line_with("地图 Map: geo:38.050000,114.520000")
        unit.type("r")  # a refusal without a reason is not sent
        await unit.line_with("拒绝需要说明原因")
        unit.type(f"r #{ins['seq'] + 1} 道路封闭，无法通行")
        refused = await state_of(console, second["id"], "refused")
        assert refused["reason"] == "道路封闭，无法通行"
        first_done = await get_instruction(http, live, op, first["id"])
        assert seconds_between(first_done, "created_at", "delivered_at") <= DELIVERY_S
        once_connected(unit)
    finally:
        await unit.stop()
        await console.close()


@pytest.mark.timeout(120)
async def test_a_team_instruction_reaches_every_connected_member_at_once(
    live: LiveServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    units = ["bc-11", "bc-12", "bc-13"]
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("".join(f"{u} {live.add_unit(u)}\n" for u in units), encoding="utf-8")
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    fleet = await Process.start("-m", "field_client", "--server", live.url, "--fleet", "3", "--token-file",
                                str(tokens), "--video", "none", "--audio", "none", "--gps", "none", "--auto-ack")
    try:
        for u in units:
            await fleet.line_with(f"unit {u}: link connected", timeout=60)
        _, action = await api(http, "POST", f"{live.url}/api/actions", op, {**ACTION, "units": units})
        await api(http, "POST", f"{live.url}/api/actions/{action['id']}/start", op)
        created = await instruct(http, live, op, action=action["id"], type="text", text="全体注意：开始清场")
        assert sorted(created["units"]) == units
        for iid in created["ids"]:
            await state_of(console, iid, "acknowledged")  # the terminals are unattended: --auto-ack
        for iid in created["ids"]:
            ins = await get_instruction(http, live, op, iid)
            assert ins["action_id"] == action["id"] and ins["done_at"] is None, "auto-ack never claims done"
            assert seconds_between(ins, "created_at", "delivered_at") <= DELIVERY_S
        for u in units:
            assert fleet.count(f"unit {u}: link connected") == 1
    finally:
        await fleet.stop()
        await console.close()


@pytest.mark.timeout(120)
async def test_an_order_nobody_answers_raises_the_overdue_alert(
    make_live: Any, http: aiohttp.ClientSession
) -> None:
    live: LiveServer = await make_live(alerts={"sweep_interval_s": 0.2})
    token = live.add_unit("bc-21")
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    unit = await field_client(live, "bc-21", token, "--video", "none", "--audio", "none", "--gps", "none")
    try:
        await connected(unit)
        created = await instruct(http, live, op, unit="bc-21", type="text", text="请回复", ack_deadline_s=2)
        await state_of(console, created["id"], "delivered")
        alert = await console.next("alert", lambda a: a["kind"] == "ack_overdue", timeout=20)
        assert alert["instruction_id"] == created["id"] and alert["unit_id"] == "bc-21"
        assert (await get_instruction(http, live, op, created["id"]))["state"] == "delivered"
        once_connected(unit)
    finally:
        await unit.stop()
        await console.close()


@pytest.mark.timeout(150)
async def test_machine_orders_are_carried_out_and_reported(live: LiveServer, http: aiohttp.ClientSession) -> None:
    token = live.add_unit("bc-31")
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    unit = await field_client(live, "bc-31", token, "--gps", "none")
    try:
        await console.next("unit_status", lambda u: u["id"] == "bc-31" and u["publishing"], timeout=60)

        stop = await instruct(http, live, op, unit="bc-31", type="record_stop")
        done = await state_of(console, stop["id"], "done", timeout=40)
        assert done["result"] == {"publishing": False}
        status = await console.next("unit_status", lambda u: u["id"] == "bc-31" and not u["publishing"])
        assert status["online"] and status["reachable"], "stopped video, still connected for orders"

        start = await instruct(http, live, op, unit="bc-31", type="record_start")
        await console.next("unit_status", lambda u: u["id"] == "bc-31" and u["publishing"], timeout=40)
        assert (await state_of(console, start["id"], "done", timeout=40))["result"] == {"publishing": True}

        call = await instruct(http, live, op, unit="bc-31", type="callback")
        callback = await console.next("unit_callback", lambda c: c["unit_id"] == "bc-31", timeout=20)
        assert callback["instruction_id"] == call["id"]
        assert (await state_of(console, call["id"], "done", timeout=20))["result"] == {"audio": "live"}

        end = await instruct(http, live, op, unit="bc-31", type="end_action")
        ended = await state_of(console, end["id"], "done", timeout=40)
        assert ended["result"] == {"publishing": False, "ended": True}
        await console.next("unit_status", lambda u: u["id"] == "bc-31" and not u["publishing"], timeout=20)
        once_connected(unit)
    finally:
        await unit.stop()
        await console.close()


@pytest.mark.timeout(120)
async def test_a_unit_without_a_camera_refuses_camera_orders_with_the_reason(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    token = live.add_unit("bc-32")
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    unit = await field_client(live, "bc-32", token, "--video", "none", "--audio", "none", "--gps", "none")
    try:
        await connected(unit)
        for kind in ("snapshot", "record_start", "callback"):
            created = await instruct(http, live, op, unit="bc-32", type=kind)
            refused = await state_of(console, created["id"], "refused", timeout=20)
            assert "no camera" in refused["reason"] or "no microphone" in refused["reason"], refused
        once_connected(unit)
    finally:
        await unit.stop()
        await console.close()


@pytest.mark.timeout(120)
async def test_talk_back_is_heard_by_a_connected_field_client(live: LiveServer, http: aiohttp.ClientSession) -> None:
    token = live.add_unit("bc-41")
    live.add_user("op", "operator")
    op = await live.login("op")
    unit = await field_client(live, "bc-41", token, "--video", "none", "--audio", "none", "--gps", "none")
    tone = EncodedAudioLoop.build(AudioLoopSpec(frequency_hz=1000.0, amplitude=0.5))
    mic = await make_publisher(None, tone)
    sent = asyncio.Event()
    assert mic.audio is not None and mic.audio.on_packet is not None
    count_packet = mic.audio.on_packet

    def on_packet(data: bytes, keyframe: bool) -> None:
        count_packet(data, keyframe)
        if len(mic.sent_audio) >= 100:
            sent.set()

    mic.audio.on_packet = on_packet
    try:
        await connected(unit)
        headers = {"Authorization": f"Bearer {op}", "Content-Type": "application/sdp"}
        async with http.post(f"{live.url}/api/talk/bc-41", data=mic.pc.localDescription.sdp, headers=headers) as r:
            assert r.status == 201, await r.text()
            location = r.headers["Location"]
            await mic.pc.setRemoteDescription(RTCSessionDescription(sdp=await r.text(), type="answer"))
        await unit.line_with("talk-back from op: listening", timeout=20)
        # Two seconds of the operator's voice (a 1 kHz tone) go out to the unit.
        await asyncio.wait_for(sent.wait(), 30)
        async with http.delete(f"{live.url}{location}", headers={"Authorization": f"Bearer {op}"}) as r:
            assert r.status == 200
        ended = await unit.line_with("talk-back ended", timeout=20)
        match = re.search(r"\((\d+) audio frames heard, loudest at (\d+) Hz\)", ended)
        assert match, ended
        assert int(match.group(1)) >= 50, "at least a second of the operator's audio was heard"
        assert abs(int(match.group(2)) - 1000) <= 25, "what was heard is the tone that was sent"
        once_connected(unit)
    finally:
        await mic.close()
        await unit.stop()


@pytest.mark.timeout(120)
async def test_sos_without_gps_uses_the_last_known_fix_or_says_it_is_unknown(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    token = live.add_unit("bc-51")
    lost = live.add_unit("bc-52")
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    unit = await field_client(live, "bc-51", token, "--video", "none", "--audio", "none", "--gps",
                              "sim:38.0412,114.5123,1")
    try:
        status = await console.next("unit_status", lambda u: u["id"] == "bc-51" and u["position"], timeout=60)
        sos = await Process.start("-m", "field_client", "--server", live.url, "--unit", "bc-51", "--token", token,
                                  "--sos", "被围堵")
        assert await sos.finished() == 0, sos.output()
        alert = await console.next("alert", lambda a: a["kind"] == "sos" and a["unit_id"] == "bc-51")
        assert "last known position" in alert["message"] and "被围堵" in alert["message"]
        assert alert["position_age_s"] is not None and alert["position_age_s"] < 60
        assert abs(alert["position"]["lat"] - status["position"]["lat"]) < 0.001

        nowhere = await Process.start("-m", "field_client", "--server", live.url, "--unit", "bc-52", "--token", lost,
                                      "--sos")
        assert await nowhere.finished() == 0, nowhere.output()
        alert = await console.next("alert", lambda a: a["kind"] == "sos" and a["unit_id"] == "bc-52")
        assert alert["position"] is None and "position unknown" in alert["message"]
        assert not any(a for a in (await api(http, "GET", f"{live.url}/api/alerts", op))[1]["alerts"]
                       if a["unit_id"] == "bc-52" and a["position"])
    finally:
        await unit.stop()
        await console.close()


async def test_a_second_signal_exits_at_once_without_a_traceback(live: LiveServer) -> None:
    """An officer who presses Ctrl+C twice (or a supervisor process that signals twice) gets an
    immediate exit, not tracebacks from what the closed event loop left behind."""
    token = live.add_unit("bc-sig-01")
    client = await field_client(live, "bc-sig-01", token)
    await connected(client)
    await client.line_with("publishing", timeout=60)
    # The kernel merges a signal that arrives while the same one is still pending, so the second
    # press is sent once the first has been handled, as an officer's second press would be.
    client.proc.send_signal(signal.SIGINT)
    await client.line_with("stopping (send again to force)", timeout=60)
    client.proc.send_signal(signal.SIGINT)
    code = await client.stop(sig=signal.SIGINT)  # fails on a traceback in its output
    assert "SIGINT again: exiting at once" in client.output(), client.output()
    assert code == 1

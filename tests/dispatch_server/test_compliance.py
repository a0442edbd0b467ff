"""流程预警 live: the rules of procedure of running actions checked against real units.

A seizure needs two recorders at once: run with one real ``field-client`` process publishing, the
console (a python-socketio client) is alerted within 2 s of the start and again within 2 s of the
second unit stopping; the breaks are in the action's record, its audit trail and the completeness
statement of an export. The notice is marked from ``field-client`` (one-shot and at the terminal),
a unit leaving the area breaks ``stay_in_area``, and a planned stop breaks nothing.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from dispatch_server.appkeys import AUDIT, STOPPING
from recordings.ledger import PUBLIC_KEY_FILE
from recordings.package_verify import verify_package
from tests.conftest import LiveServer
from tests.dispatch_server.test_actions import api
from tests.dispatch_server.test_party import party_login, wait_state, watch_and_release
from tests.recordings.test_recorder import FAST, unpublish
from tests.recordings.test_tamper_suite import second_verifier
from tests.support.peers import make_publisher, whip_publish
from tests.support.processes import Process
from tests.support.redis_server import free_port
from tests.support.server import ServerProcess, add_unit, add_user, login, write_config
from tests.support.unit_client import Console, RawUnit
from utctime import parse_iso

ALERT_WITHIN_S = 2.0  # issue #17: a broken rule is on the console within 2 s
CASE = "（2026）冀0916执777号"
PASSWORD = "operator-pass-1"
AREA = {"type": "circle", "lat": 38.04, "lon": 114.51, "radius_m": 500}
SEIZURE = {"case_number": CASE, "title": "查封 某公司 车辆", "type": "seizure", "address": "石家庄市 某路 1 号",
           "area": AREA, "units": ["bc-01", "bc-02"], "officers": ["王法警"], "judge": "李法官"}
# Only the rule under test: nothing else breaks (min_recorders 0, no recording before start ...).
ONLY = {"min_recorders": 0, "record_before_start": False, "stay_in_area": False, "notice_within_s": 0}


def rules(**seizure: Any) -> dict[str, Any]:
    return {"rules": [{"type": "seizure", **ONLY, **seizure}]}


async def field_client(live: LiveServer, unit: str, token: str, *extra: str, tty: bool = False) -> Process:
    return await Process.start("-m", "field_client", "--server", live.url, "--unit", unit, "--token", token,
                               "--size", "320x240", "--fps", "15", "--audio", "none", *extra, tty=tty)


async def publishing(console: Console, unit: str, on: bool = True, timeout: float = 60) -> None:
    await console.next("unit_status", lambda s: s["id"] == unit and s["publishing"] is on, timeout=timeout)


async def procedure(http: aiohttp.ClientSession, live: LiveServer, token: str, action_id: str) -> dict[str, Any]:
    status, body = await api(http, "GET", f"{live.url}/api/actions/{action_id}/procedure", token)
    assert status == 200, body
    return dict(body)


def of_rule(compliance: dict[str, Any], rule: str, key: str = "breaks") -> list[dict[str, Any]]:
    return [b for b in compliance[key] if b["rule"] == rule]


@pytest.mark.timeout(240)
async def test_one_recorder_where_two_are_required_is_alerted_at_once_recorded_and_stated(
        make_live: Any, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    live: LiveServer = await make_live(archive=FAST)
    tokens = {u: live.add_unit(u) for u in ("bc-01", "bc-02", "bc-03")}
    live.add_user("op", "operator")
    live.add_user("judge", "supervisor")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    _, action = await api(http, "POST", f"{live.url}/api/actions", op, SEIZURE)
    aid = action["id"]
    gps = "sim:38.04,114.51,30"
    first = await field_client(live, "bc-01", tokens["bc-01"], "--gps", gps)
    second: Process | None = None
    try:
        await publishing(console, "bc-01")

        # The action starts with one recorder: alerted within 2 s, with what is missing.
        t0 = time.monotonic()
        status, _ = await api(http, "POST", f"{live.url}/api/actions/{aid}/start", op)
        assert status == 200
        alert = await console.next("alert", lambda a: a["kind"] == "procedure_min_recorders", timeout=10)
        start_latency = time.monotonic() - t0
        assert alert["action_id"] == aid and alert["case_number"] == CASE
        assert alert["params"]["running"] == 1 and alert["params"]["required"] == 2
        assert alert["params"]["missing"] == ["bc-02"] and alert["unit_id"] == "bc-02"
        before = await console.next("alert", lambda a: a["kind"] == "procedure_record_before_start", timeout=10)
        assert before["unit_id"] == "bc-02" and before["action_id"] == aid
        print(f"\nprocedure_min_recorders alert {start_latency * 1000:.0f} ms after the action start")
        assert start_latency < ALERT_WITHIN_S, f"alert after {start_latency:.2f} s"
        now = await procedure(http, live, op, aid)
        assert not now["compliant"] and {b["rule"] for b in now["open"]} == {"min_recorders", "record_before_start"}

        # The second recorder comes: the action complies; it stops: a new break, alerted within 2 s.
        second = await field_client(live, "bc-02", tokens["bc-02"], "--gps", gps)
        await console.next("action_procedure", lambda c: c["action_id"] == aid and c["compliant"], timeout=60)
        # The condition starts when the server no longer records bc-02 (its publisher ended, as the
        # roster pushes it); the process takes its time to close the rest.
        while not console.queues["unit_status"].empty():  # what came before bc-02 published
            console.queues["unit_status"].get_nowait()
        stopped = asyncio.ensure_future(publishing(console, "bc-02", on=False, timeout=30))
        t1 = time.monotonic()
        second.proc.send_signal(signal.SIGTERM)
        await stopped
        t2 = time.monotonic()
        again = await console.next("alert", lambda a: a["kind"] == "procedure_min_recorders", timeout=10)
        stop_latency = time.monotonic() - t2
        print(f"procedure_min_recorders alert {stop_latency * 1000:.0f} ms after the server saw bc-02 stop "
              f"({(time.monotonic() - t1) * 1000:.0f} ms after the signal to its field-client)")
        assert await second.finished() == 0
        assert again["id"] != alert["id"] and again["params"]["missing"] == ["bc-02"]
        assert stop_latency < ALERT_WITHIN_S, f"alert after {stop_latency:.2f} s"
        shown = await console.next("action_procedure", lambda c: c["action_id"] == aid and not c["compliant"])
        assert [b["rule"] for b in shown["open"]] == ["min_recorders"]

        # The officer marks the notice from field-client (one-shot); a unit of no running action cannot.
        notice = await Process.start("-m", "field_client", "--server", live.url, "--unit", "bc-01",
                                     "--token", tokens["bc-01"], "--notice", "王法警")
        assert await notice.finished() == 0, notice.output()
        stray = await Process.start("-m", "field_client", "--server", live.url, "--unit", "bc-03",
                                    "--token", tokens["bc-03"], "--notice")
        assert await stray.finished(check=False) == 1
        assert "not_in_running_action" in stray.output(), stray.output()
        marked = (await procedure(http, live, op, aid))["notice"]
        assert marked["marked_by"] == "王法警" and marked["unit_id"] == "bc-01"

        status, _ = await api(http, "POST", f"{live.url}/api/actions/{aid}/end", op)
        assert status == 200
        record = await procedure(http, live, op, aid)
    finally:
        await first.stop()
        if second is not None:
            await second.stop()
        await console.close()

    # The action's record: two min_recorders breaks and bc-02 not recording at the start, all closed.
    assert record["open"] == [] and record["compliant"]
    shortfalls = of_rule(record, "min_recorders")
    assert len(shortfalls) == 2 and all(b["ended_at"] for b in record["breaks"])
    assert [b["unit_id"] for b in of_rule(record, "record_before_start")] == ["bc-02"]
    assert not of_rule(record, "notice"), "marked within its time: the notice rule never broke"
    verbs = [e["verb"] for e in await live.app[AUDIT].entries(subject=aid)]
    assert verbs.count("procedure.break_opened") == 3 and verbs.count("procedure.break_closed") == 3
    assert "procedure.notice_marked" in verbs
    ledger = [json.loads(line) for line in
              (live.settings.archive_dir / "ledger" / "entries.jsonl").read_text().splitlines()]
    noticed = [e for e in ledger if e["type"] == "notice_marked"]
    assert len(noticed) == 1 and noticed[0]["data"]["action_id"] == aid and noticed[0]["actor"] == "unit:bc-01"
    # ... and a marker on the timeline of the recordings it falls in (bc-01 recorded throughout).
    judge = await live.login("judge")
    [rid] = [e["data"]["recording_id"] for e in ledger if e["type"] == "recording_opened"
             and e["data"]["unit_id"] == "bc-01" and e["data"]["action_id"] == aid]
    status, rec = await api(http, "GET", f"{live.url}/api/recordings/{rid}", judge)
    assert status == 200, rec
    [marker] = rec["markers"]
    assert marker["kind"] == "notice" and marker["marked_by"] == "王法警" and 0 < marker["t"] < rec["duration_s"] + 1

    # The completeness statement of an export states each break with its times in the court's zone.
    _, code = await api(http, "POST", f"{live.url}/api/party/codes", judge, {"case_number": CASE, "party_name": "张三"})
    _, party = await party_login(http, live, code["code"], case=CASE)
    status, req = await api(http, "POST", f"{live.url}/api/party/requests", party["token"],
                            {"action_id": aid, "reason": "查看执行过程是否合规"})
    assert status == 201, req
    await api(http, "POST", f"{live.url}/api/footage-requests/{req['id']}/decision", judge, {"decision": "approve"})
    status, doc = await api(http, "POST", f"{live.url}/api/footage-requests/{req['id']}/export", judge)
    assert status == 202, doc
    await wait_state(http, live, judge, req["id"], "review", timeout=120)
    await watch_and_release(http, live, judge, req["id"])
    _, mine = await api(http, "GET", f"{live.url}/api/party/requests", party["token"])
    async with http.get(live.url + mine["requests"][0]["links"][0]["url"]) as r:
        package = tmp_path / "package.zip"
        package.write_bytes(await r.read())
    assert verify_package(package).failures == []
    pem = live.settings.archive_dir / PUBLIC_KEY_FILE
    verdict = second_verifier("package", str(package), "--public-key", str(pem))  # written from the spec alone
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    with zipfile.ZipFile(package) as z:
        stated = json.loads(z.read("manifest.json"))["completeness"]
    zone = ZoneInfo("Asia/Shanghai")
    assert stated["time_zone"] == "Asia/Shanghai" and stated["notice"]["marked_by"] == "王法警"
    lines = [b for b in stated["procedure_breaks"] if b["rule"] == "min_recorders"]
    assert len(lines) == 2
    for line, brk in zip(lines, shortfalls, strict=True):
        start = datetime.fromtimestamp(parse_iso(brk["started_at"]), zone).strftime("%H:%M:%S")
        end = datetime.fromtimestamp(parse_iso(brk["ended_at"]), zone).strftime("%H:%M:%S")
        assert line["statement"] == f"{start}–{end} 仅一台记录仪在录（要求至少 2 台）", line
        assert line["statement_en"] == f"{start}–{end} only one recorder running (at least 2 required)", line


async def test_the_notice_rule_fires_when_late_and_clears_when_marked(
        make_live: Any, http: aiohttp.ClientSession) -> None:
    live: LiveServer = await make_live(procedure=rules(notice_within_s=1.0))
    tokens = {u: live.add_unit(u) for u in ("bc-01", "bc-02", "bc-03")}
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    units = {u: await RawUnit(live.url, u, t).connect() for u, t in tokens.items()}
    try:
        assert (await units["bc-01"].call("notice", {}))["error"]["code"] == "not_in_running_action"
        ids = []
        for team in (["bc-01"], ["bc-02"], ["bc-03"]):
            _, action = await api(http, "POST", f"{live.url}/api/actions", op, {**SEIZURE, "units": team})
            ids.append(action["id"])
        late, early, later = ids
        await api(http, "POST", f"{live.url}/api/actions/{late}/start", op)
        await api(http, "POST", f"{live.url}/api/actions/{early}/start", op)
        ack = await units["bc-02"].call("notice", {"officer": "王法警"})  # in time
        assert ack["ok"] and ack["marked_by"] == "王法警" and ack["action_id"] == early
        alert = await console.next("alert", lambda a: a["kind"] == "procedure_notice", timeout=10)
        assert alert["action_id"] == late and alert["params"]["within_s"] == 1.0
        # Started after the other two, so when its notice is late theirs were due too.
        await api(http, "POST", f"{live.url}/api/actions/{later}/start", op)
        third = await console.next("alert", lambda a: a["kind"] == "procedure_notice", timeout=10)
        assert third["action_id"] == later, "the action whose notice was marked in time is not alerted"
        assert of_rule(await procedure(http, live, op, early), "notice") == []

        # Marked late: the break closes at the mark, and the notice is not alerted again.
        ack = await units["bc-01"].call("notice", None)
        assert ack["ok"] and ack["marked_by"] == "unit:bc-01"
        cleared = await console.next("action_procedure", lambda c: c["action_id"] == late and c["compliant"]
                                     and of_rule(c, "notice"))
        [brk] = of_rule(cleared, "notice")
        assert brk["ended_at"] == ack["notice_at"], "the break ends when the notice was marked"
        again = await units["bc-01"].call("notice", {"officer": "另一人"})
        assert again["notice_at"] == ack["notice_at"] and again["marked_by"] == "unit:bc-01", "the first mark stands"
        assert (await units["bc-01"].call("notice", {"officer": 5}))["error"]["code"] == "bad_message"
        assert (await units["bc-01"].call("notice", [1]))["error"]["code"] == "bad_message"
    finally:
        for unit in units.values():
            await unit.close()
        await console.close()


async def test_a_unit_leaving_the_area_breaks_stay_in_area_until_it_is_back(
        make_live: Any, http: aiohttp.ClientSession) -> None:
    live: LiveServer = await make_live(procedure=rules(stay_in_area=True))
    tokens = {u: live.add_unit(u) for u in ("bc-01", "bc-02")}
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    units = {u: await RawUnit(live.url, u, t).connect() for u, t in tokens.items()}
    try:
        assert (await units["bc-02"].call("position", {"lat": 38.06, "lon": 114.51, "ts": time.time()}))["ok"]
        _, action = await api(http, "POST", f"{live.url}/api/actions", op, SEIZURE)
        aid = action["id"]
        await api(http, "POST", f"{live.url}/api/actions/{aid}/start", op)
        # Outside when the action starts: judged at the start.
        alert = await console.next("alert", lambda a: a["kind"] == "procedure_stay_in_area", timeout=10)
        assert alert["unit_id"] == "bc-02" and alert["params"]["distance_m"] > 1000
        assert (await units["bc-01"].call("position", {"lat": 38.0401, "lon": 114.5101, "ts": time.time()}))["ok"]
        assert (await units["bc-02"].call("position", {"lat": 38.0402, "lon": 114.51, "ts": time.time()}))["ok"]
        await console.next("action_procedure", lambda c: c["action_id"] == aid and c["compliant"])
        t0 = time.monotonic()
        assert (await units["bc-01"].call("position", {"lat": 38.05, "lon": 114.52, "ts": time.time()}))["ok"]
        left = await console.next("alert", lambda a: a["kind"] == "procedure_stay_in_area", timeout=10)
        assert left["unit_id"] == "bc-01" and time.monotonic() - t0 < ALERT_WITHIN_S
        # Further fixes outside do not repeat the alert for the open break.
        assert (await units["bc-01"].call("position", {"lat": 38.051, "lon": 114.52, "ts": time.time()}))["ok"]
        assert (await units["bc-01"].call("position", {"lat": 38.0401, "lon": 114.5101, "ts": time.time()}))["ok"]
        back = await console.next("action_procedure", lambda c: c["action_id"] == aid and c["compliant"])
        assert [b["unit_id"] for b in of_rule(back, "stay_in_area")] == ["bc-02", "bc-01"]
        status, listed = await api(http, "GET", f"{live.url}/api/alerts", op)
        assert [a["unit_id"] for a in listed["alerts"] if a["kind"] == "procedure_stay_in_area"] == ["bc-01", "bc-02"]
    finally:
        for unit in units.values():
            await unit.close()
        await console.close()


async def test_a_planned_stop_breaks_no_rule(make_live: Any, http: aiohttp.ClientSession,
                                              vp8_loop: Any) -> None:
    live: LiveServer = await make_live(archive=FAST, procedure=rules(min_recorders=1))
    token = live.add_unit("bc-01")
    live.add_unit("bc-02")
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    pub = await make_publisher(vp8_loop)
    try:
        await whip_publish(http, live.url, "bc-01", token, pub)
        await publishing(console, "bc-01")
        _, action = await api(http, "POST", f"{live.url}/api/actions", op, SEIZURE)
        await api(http, "POST", f"{live.url}/api/actions/{action['id']}/start", op)
        started = await console.next("action_procedure", lambda c: c["action_id"] == action["id"])
        assert started["compliant"], started

        await live.app[STOPPING].begin()
        await unpublish(http, live, pub, token)  # the publisher goes, as every one does in a stop
        await publishing(console, "bc-01", on=False)  # the roster's watchers ran before this was pushed
        after = await procedure(http, live, op, action["id"])
        assert after["breaks"] == [] and after["compliant"]
        status, listed = await api(http, "GET", f"{live.url}/api/alerts", op)
        assert not [a for a in listed["alerts"] if a["kind"].startswith("procedure_")]
    finally:
        await pub.close()
        await console.close()


async def test_the_officer_marks_the_notice_at_the_field_client_terminal(
        make_live: Any, http: aiohttp.ClientSession) -> None:
    live: LiveServer = await make_live(procedure=rules(notice_within_s=300))
    token = live.add_unit("veh-01", "vehicle")
    live.add_user("op", "operator")
    op = await live.login("op")
    unit = await field_client(live, "veh-01", token, "--video", "none", "--gps", "none", tty=True)
    try:
        await unit.line_with("link connected", timeout=60)
        unit.type("n")
        await unit.line_with("告知未标记 notice not marked")
        assert "not_in_running_action" in await unit.line_with("告知未标记")
        _, action = await api(http, "POST", f"{live.url}/api/actions", op, {**SEIZURE, "units": ["veh-01"]})
        await api(http, "POST", f"{live.url}/api/actions/{action['id']}/start", op)
        unit.type("n 李四")
        await unit.line_with("已告知 notice marked")
        notice = (await procedure(http, live, op, action["id"]))["notice"]
        assert notice["marked_by"] == "李四" and notice["unit_id"] == "veh-01"
    finally:
        await unit.stop()


@pytest.mark.timeout(240)
async def test_a_planned_stop_and_the_restart_open_no_break(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """SIGTERM with a compliant seizure running and two real units publishing: the stop opens no
    break and raises no alert, and neither do the units coming back after the restart (the check
    waits SETTLE_S for them, then checks in full and tells the consoles)."""
    cfg = write_config(tmp_path / "config.toml", tmp_path / "data",
                       "[archive]\nsegment_s = 2.0\nreconnect_grace_s = 30.0\n")
    cfg.write_text(cfg.read_text().replace("port = 0", f"port = {free_port()}"))
    units = ["sim-01", "sim-02"]
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("".join(f"{u} {add_unit(cfg, u)}\n" for u in units))
    add_user(cfg, "op", "operator", PASSWORD)
    server = ServerProcess(cfg).start()
    fleet = await Process.start("-m", "field_client", "--server", server.url, "--fleet", "2", "--token-file",
                                str(tokens), "--size", "320x240", "--fps", "15", "--gps", "none", "--audio", "none")
    console: Console | None = None
    try:
        op = await login(server.url, "op", PASSWORD)
        console = await Console(server.url, op).connect()
        for unit in units:
            await publishing(console, unit, timeout=90)
        _, action = await api(http, "POST", f"{server.url}/api/actions", op, {**SEIZURE, "units": units, "area": None})
        aid = action["id"]
        await api(http, "POST", f"{server.url}/api/actions/{aid}/start", op)
        started = await console.next("action_procedure", lambda c: c["action_id"] == aid, timeout=10)
        assert started["compliant"] and started["breaks"] == [], started
        await console.close()
        console = None

        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(server.proc.wait, 30)
        assert server.proc.returncode == 0
        server.stop()
        server = ServerProcess(cfg).start()
        op = await login(server.url, "op", PASSWORD)
        console = await Console(server.url, op).connect()
        settled = await console.next("action_procedure", lambda c: c["action_id"] == aid, timeout=60)
        assert settled["compliant"] and settled["breaks"] == [], settled
        status, listed = await api(http, "GET", f"{server.url}/api/alerts", op)
        assert status == 200 and not [a for a in listed["alerts"] if a["kind"].startswith("procedure_")], listed
        status, record = await api(http, "GET", f"{server.url}/api/actions/{aid}/procedure", op)
        assert status == 200 and record["breaks"] == [] and record["compliant"], record
    finally:
        if console is not None:
            await console.close()
        await fleet.stop()
        server.stop()

"""The per-action report (行动报告) of a real action: a real server, real ``field-client``
processes publishing video and GPS, a unit whose link drops mid-action and comes back (a gap),
an instruction the officer answers at the terminal and one that expires while its unit is away,
the spoken notice marked at the terminal, an SOS and the offline alert, and the rule break the
live rule check records while one recorder runs where two are required; then the report is
checked against what the test did and against the archive itself (every segment's SHA-256
computed here from the file)."""

from __future__ import annotations

import asyncio
import hashlib
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dispatch_server.appkeys import ARCHIVE as ARCHIVE_SERVICE
from dispatch_server.auth import PERMISSIONS
from tests.conftest import LiveServer
from tests.dispatch_server.test_actions import api
from tests.recordings.archive_support import entries, of_type
from tests.recordings.test_recorder import ArchiveEvents, verify_archive
from tests.support.processes import Process
from tests.support.unit_client import Console
from utctime import parse_iso

ARCHIVE = {"segment_s": 2.0, "reconnect_grace_s": 60.0, "sign_interval_s": 5.0, "min_free_bytes": 0}
HERE = (38.0412, 114.5123)
ACTION = {
    "case_number": "(2026)冀0916执77号", "title": "查封 某公司 仓库", "type": "seizure",
    "address": "石家庄市 某路 9 号", "area": {"type": "circle", "lat": HERE[0], "lon": HERE[1], "radius_m": 300},
    "planned_at": "2026-12-02T01:00:00Z", "officers": ["王法警", "赵法警"], "judge": "李法官",
}
JOIN_S = 1.5  # segments closer than this are one recorded stretch (export_sources.CONTIGUOUS_S)


async def field_client(live: LiveServer, unit: str, token: str, *, tty: bool = False) -> Process:
    return await Process.start("-m", "field_client", "--server", live.url, "--unit", unit, "--token", token,
                               "--size", "320x240", "--fps", "15", "--gps", f"sim:{HERE[0]},{HERE[1]},40", tty=tty)


async def publishing(console: Console, *units: str, timeout: float = 90) -> None:
    """Wait until every one of ``units`` has been seen publishing (one pass over the events, so
    one unit's event is not consumed while waiting for another's)."""
    waiting = set(units)

    def seen(u: dict[str, Any]) -> bool:
        if u["publishing"]:
            waiting.discard(u["id"])
        return not waiting

    await console.next("unit_status", seen, timeout=timeout)


async def state_of(console: Console, iid: str, state: str, timeout: float = 30) -> dict[str, Any]:
    return await console.next("instruction_update", lambda u: u["id"] == iid and u["state"] == state, timeout=timeout)


def sealed(events: ArchiveEvents, unit_rids: set[str]) -> int:
    return sum(1 for k, d in events.seen if k == "sealed" and d.get("recording_id") in unit_rids)


async def until(predicate: Any, timeout: float = 60, what: str = "condition") -> Any:
    """Wait for ``predicate()`` (sync or async) to be truthy, checking it every 0.2 s, and fail
    naming ``what`` after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                value = predicate()
                if asyncio.iscoroutine(value):
                    value = await value
                if value:
                    return value
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"no {what} within {timeout} s") from None


def recorded_by_unit(archive: Path, action_id: str) -> dict[str, list[tuple[float, float]]]:
    """Each unit's recorded stretches for the action, from the ledger (not the catalog)."""
    rids = {d["recording_id"]: d["unit_id"] for d in of_type(archive, "recording_opened")
            if d.get("action_id") == action_id}
    out: dict[str, list[tuple[float, float]]] = {}
    for rid, unit in rids.items():
        for seg in of_type(archive, "segment_sealed", rid):
            out.setdefault(unit, []).append((parse_iso(seg["start"]), parse_iso(seg["end"])))
    joined: dict[str, list[tuple[float, float]]] = {}
    for unit, spans in out.items():
        stretches: list[tuple[float, float]] = []
        for s, e in sorted(spans):
            if stretches and s - stretches[-1][1] <= JOIN_S:
                stretches[-1] = (stretches[-1][0], max(stretches[-1][1], e))
            else:
                stretches.append((s, e))
        joined[unit] = stretches
    return joined


def counted_coverage(by_unit: dict[str, list[tuple[float, float]]], start: float, end: float, required: int) -> float:
    """The share of 10 ms steps of ``[start, end)`` during which ``required`` units recorded."""
    steps = int((end - start) / 0.01)
    covered = 0
    for i in range(steps):
        t = start + (i + 0.5) * 0.01
        if sum(any(s <= t < e for s, e in spans) for spans in by_unit.values()) >= required:
            covered += 1
    return covered / steps


def test_only_supervisors_auditors_and_admins_read_reports_and_they_may_read_actions_and_evidence() -> None:
    assert PERMISSIONS["reports.read"] == {"supervisor", "auditor", "admin"}
    assert PERMISSIONS["reports.read"] <= PERMISSIONS["dispatch.read"] & PERMISSIONS["evidence.view"]


@pytest.mark.timeout(300)
async def test_the_report_of_a_real_action_says_what_happened(
    make_live: Any, http: aiohttp.ClientSession
) -> None:
    live: LiveServer = await make_live(archive=ARCHIVE, alerts={"sweep_interval_s": 0.2})
    events = ArchiveEvents(live)
    archive = live.settings.archive_dir
    t1, t2 = live.add_unit("bc-r1"), live.add_unit("veh-r2", "vehicle")
    live.add_user("op", "operator")
    live.add_user("sup", "supervisor")
    op, sup = await live.login("op"), await live.login("sup")
    console = await Console(live.url, op).connect()
    c1 = await field_client(live, "bc-r1", t1, tty=True)
    c2 = await field_client(live, "veh-r2", t2)
    c2b: Process | None = None
    try:
        await publishing(console, "bc-r1", "veh-r2")
        team = {**ACTION, "units": ["bc-r1", "veh-r2"]}
        status, action = await api(http, "POST", f"{live.url}/api/actions", op, team)
        assert status == 201, action
        aid = action["id"]
        status, body = await api(http, "GET", f"{live.url}/api/actions/{aid}/report", sup)
        assert (status, body["error"]["code"]) == (409, "action_not_started")
        status, _ = await api(http, "POST", f"{live.url}/api/actions/{aid}/start", op)
        assert status == 200

        def action_rids(unit: str | None = None) -> set[str]:
            return {d["recording_id"] for d in of_type(archive, "recording_opened")
                    if d.get("action_id") == aid and (unit is None or d["unit_id"] == unit)}

        await until(lambda: len(action_rids()) == 2, what="both units recording for the action")
        await until(lambda: sealed(events, action_rids("veh-r2")) >= 2, what="veh-r2 recorded 4 s")
        status, running = await api(http, "GET", f"{live.url}/api/actions/{aid}/report", sup)
        assert status == 200 and running["provisional"] is True and running["times"]["ended_at"] is None
        assert running["times"]["until"] and running["evidence"]["segments"] >= 2

        # An order answered at the terminal: acknowledged, then done.
        status, answered = await api(http, "POST", f"{live.url}/api/instructions", op,
                                     {"unit": "bc-r1", "type": "text", "text": "请清点查封物品"})
        assert status == 201, answered
        await state_of(console, answered["id"], "delivered")
        await c1.line_with("a=确认 acknowledge")
        c1.type("a")
        await state_of(console, answered["id"], "acknowledged")
        c1.type("d")
        await state_of(console, answered["id"], "done")
        # The officer gives the spoken notice and marks it at the terminal (已告知).
        c1.type("n 王法警")
        await c1.line_with("已告知 notice marked")

        # SOS from the first unit, acknowledged by the operator.
        sos = await Process.start("-m", "field_client", "--server", live.url, "--unit", "bc-r1", "--token", t1,
                                  "--sos", "现场有人阻挠")
        assert await sos.finished() == 0, sos.output()
        sos_alert = await console.next("alert", lambda a: a["kind"] == "sos" and a["unit_id"] == "bc-r1", timeout=20)
        status, _ = await api(http, "POST", f"{live.url}/api/alerts/{sos_alert['id']}/ack", op)
        assert status == 200

        # The vehicle's link drops without a goodbye; an order to it expires while it is away.
        await c2.stop(sig=signal.SIGKILL, check=False)
        offline = await console.next("alert", lambda a: a["kind"] == "unit_offline" and a["unit_id"] == "veh-r2",
                                     timeout=60)
        status, expiring = await api(http, "POST", f"{live.url}/api/instructions", op,
                                     {"unit": "veh-r2", "type": "text", "text": "请回到南门", "ttl_s": 1})
        assert status == 201, expiring
        await state_of(console, expiring["id"], "expired")
        before = sealed(events, action_rids("veh-r2"))
        c2b = await field_client(live, "veh-r2", t2)
        await until(lambda: sealed(events, action_rids("veh-r2")) >= before + 2, timeout=120,
                    what="veh-r2 recording again after the drop")

        status, ended = await api(http, "POST", f"{live.url}/api/actions/{aid}/end", op)
        assert status == 200 and ended["state"] == "ended"
        await until(lambda: {d["recording_id"] for k, d in events.seen if k == "closed"} >= action_rids(),
                    timeout=60, what="the action's recordings closed")

        status, procedure = await api(http, "GET", f"{live.url}/api/actions/{aid}/procedure", sup)
        assert status == 200, procedure
        status, report = await api(http, "GET", f"{live.url}/api/actions/{aid}/report", sup)
        assert status == 200, report
    finally:
        await c1.stop()
        if c2b is not None:
            await c2b.stop()
        await console.close()

    # who, when
    assert report["provisional"] is False and report["action"]["id"] == aid
    assert report["court_name"] == live.settings.procedure.court_name
    assert [u["id"] for u in report["team"]["units"]] == ["bc-r1", "veh-r2"]
    assert [u["kind"] for u in report["team"]["units"]] == ["body", "vehicle"]
    assert report["team"]["officers"] == ACTION["officers"] and report["team"]["judge"] == "李法官"
    times = report["times"]
    assert (times["started_at"], times["ended_at"]) == (ended["started_at"], ended["ended_at"])
    assert times["planned_at"] == "2026-12-02T01:00:00Z" and times["local"]["planned_at"] == "2026-12-02 09:00:00"
    assert abs(times["duration_s"] - (parse_iso(ended["ended_at"]) - parse_iso(ended["started_at"]))) <= 1.0

    # instructions and their answers, oldest first
    ins = {i["id"]: i for i in report["instructions"]}
    assert [i["id"] for i in report["instructions"]] == [answered["id"], expiring["id"]]
    done = ins[answered["id"]]
    assert done["state"] == "done" and done["payload"]["text"] == "请清点查封物品"
    assert done["delivered_at"] and done["acknowledged_at"] and done["done_at"]
    gone = ins[expiring["id"]]
    assert gone["state"] == "expired" and gone["reason"] == "ttl_expired" and gone["delivered_at"] is None

    # alerts of the action
    alerts = {a["id"]: a for a in report["alerts"]}
    assert alerts[sos_alert["id"]]["kind"] == "sos" and alerts[sos_alert["id"]]["acknowledged_by"] == "op"
    assert alerts[offline["id"]]["kind"] == "unit_offline" and alerts[offline["id"]]["unit_id"] == "veh-r2"

    # evidence: every recording of the action, every segment's hash as the file has it
    ledger_rids = {d["recording_id"] for d in of_type(archive, "recording_opened") if d.get("action_id") == aid}
    recs = {r["recording_id"]: r for r in report["evidence"]["recordings"]}
    assert set(recs) == ledger_rids and len(recs) >= 2
    sealed_entries = {(e["data"]["recording_id"], e["data"]["seq"]): (e["index"], e["data"]) for e in entries(archive)
                      if e["type"] == "segment_sealed" and e["data"]["recording_id"] in ledger_rids}
    listed = {(rid, s["seq"]): s for rid, r in recs.items() for s in r["segments"]}
    assert set(listed) == set(sealed_entries)
    for key, seg in listed.items():
        index, data = sealed_entries[key]
        file_hash = hashlib.sha256((archive / data["path"]).read_bytes()).hexdigest()
        assert seg["sha256"] == file_hash == data["sha256"], key
        assert seg["ledger_index"] == index and seg["bytes"] == data["bytes"]
    assert report["evidence"]["segments"] == len(sealed_entries)
    opened_index = {e["data"]["recording_id"]: e["index"] for e in entries(archive) if e["type"] == "recording_opened"}
    assert all(r["opened_index"] == opened_index[rid] for rid, r in recs.items())

    # the gap: the vehicle's link, as the ledger has it
    ledger_gaps = [g for rid in action_rids("veh-r2") for g in of_type(archive, "gap", rid)]
    assert len(ledger_gaps) == 1 and ledger_gaps[0]["cause"] == "link_lost"
    assert [(g["unit_id"], g["cause"], g["start"], g["end"]) for g in report["gaps"]] == [
        ("veh-r2", "link_lost", ledger_gaps[0]["start"], ledger_gaps[0]["end"])]
    vehicle = next(u for u in report["timeline"] if u["unit_id"] == "veh-r2")
    assert len(vehicle["recorded"]) == 2 and vehicle["gaps"][0]["cause"] == "link_lost"

    # coverage: two recorders at once (seizure), counted here from the ledger's segments
    cov = report["coverage"]
    assert cov["required"] == 2 == live.settings.procedure.rule_for("seizure").min_recorders
    start, end = parse_iso(cov["start"]), parse_iso(cov["end"])
    assert abs(start - parse_iso(ended["started_at"])) <= 1.0 and abs(end - parse_iso(ended["ended_at"])) <= 1.0
    expected = counted_coverage(recorded_by_unit(archive, aid), start, end, 2)
    assert abs(cov["ratio"] - expected) <= 0.01, (cov["ratio"], expected)
    assert cov["ratio"] < 0.95, "the vehicle was away for a while"
    gap_start, gap_end = parse_iso(ledger_gaps[0]["start"]), parse_iso(ledger_gaps[0]["end"])
    assert any(parse_iso(s["start"]) <= gap_start + JOIN_S and parse_iso(s["end"]) >= gap_end - JOIN_S
               and s["running"] == 1 for s in cov["shortfalls"]), cov["shortfalls"]

    # rule breaks and the notice, as the live rule check recorded them
    assert [b["id"] for b in report["rule_breaks"]] == [b["id"] for b in procedure["breaks"]]
    # The rule check sees the unit go (its link, found lost a moment after its frames stopped) and
    # come back: the break overlaps the recording's gap.
    drop = [b for b in report["rule_breaks"] if b["rule"] == "min_recorders" and b["ended_at"]
            and parse_iso(b["started_at"]) < gap_end and parse_iso(b["ended_at"]) > gap_start]
    assert drop, ("the vehicle's absence is a min_recorders break",
                  [(b["rule"], b["unit_id"], b["started_at"], b["ended_at"]) for b in report["rule_breaks"]],
                  (ledger_gaps[0]["start"], ledger_gaps[0]["end"]))
    assert drop[0]["open"] is False and drop[0]["statement"].endswith("仅一台记录仪在录（要求至少 2 台）")
    assert drop[0]["seconds"] == pytest.approx(parse_iso(drop[0]["ended_at"]) - parse_iso(drop[0]["started_at"]),
                                               abs=1.0)
    notice = report["notice"]
    assert (notice["marked_by"], notice["unit_id"]) == ("王法警", "bc-r1")
    assert notice["notice_at"] == procedure["notice"]["notice_at"] and notice["in_time"] is True
    assert 0 < notice["after_start_s"] < 120

    # tracks: each unit's GPS during the action
    tracks = {t["unit_id"]: t for t in report["tracks"]}
    for unit in ("bc-r1", "veh-r2"):
        assert tracks[unit]["fixes"] >= 3 and len(tracks[unit]["points"]) == tracks[unit]["fixes"]
        for lat, lon in tracks[unit]["points"]:
            assert abs(lat - HERE[0]) < 0.01 and abs(lon - HERE[1]) < 0.01

    # reading it is evidence access, in the ledger; a refusal too
    status, body = await api(http, "GET", f"{live.url}/api/actions/{aid}/report", op)
    assert status == 403, body
    viewed = [e for e in entries(archive) if e["type"] == "viewed" and e["data"].get("what") == "report"]
    assert [(e["actor"], e["outcome"], e["data"]["action_id"]) for e in viewed] == [
        ("user:sup", "ok", aid), ("user:sup", "ok", aid), ("user:op", "denied", aid)]
    await live.app[ARCHIVE_SERVICE].close()  # signs the final tree head
    assert verify_archive(archive).failures == [], "the archive with its report reads still verifies"


async def test_without_the_archive_the_report_has_no_evidence_and_no_ledger(
    make_live: Any, http: aiohttp.ClientSession
) -> None:
    live: LiveServer = await make_live(archive={"enabled": False})
    live.add_unit("bc-n1")
    live.add_user("op", "operator")
    live.add_user("adm", "admin")
    op, adm = await live.login("op"), await live.login("adm")
    status, action = await api(http, "POST", f"{live.url}/api/actions", op, {**ACTION, "units": ["bc-n1"]})
    assert status == 201, action
    await api(http, "POST", f"{live.url}/api/actions/{action['id']}/start", op)
    status, report = await api(http, "GET", f"{live.url}/api/actions/{action['id']}/report", adm)
    assert status == 200, report
    assert report["evidence"] == {"archive": False, "recordings": [], "segments": 0, "bytes": 0}
    assert report["provisional"] is True and report["coverage"]["ratio"] == 0.0
    assert [s["running"] for s in report["coverage"]["shortfalls"]] == [0]
    status, body = await api(http, "GET", f"{live.url}/api/actions/{action['id']}/report", op)
    assert status == 403, body
    assert not (live.settings.archive_dir / "ledger").exists()


async def test_unknown_and_malformed_action_ids(live: LiveServer, http: aiohttp.ClientSession) -> None:
    live.add_user("aud", "auditor")
    aud = await live.login("aud")
    status, body = await api(http, "GET", f"{live.url}/api/actions/act-000000000000/report", aud)
    assert status == 404 and body["error"]["code"] == "unknown_action"
    assert "act-000000000000" in body["error"]["message"]
    for bad in ("-act", "act%20one", "a" * 65, "%E6%8A%A5%E5%91%8A"):
        status, body = await api(http, "GET", f"{live.url}/api/actions/{bad}/report", aud)
        assert status == 400 and body["error"]["code"] == "bad_action_id", (bad, body)

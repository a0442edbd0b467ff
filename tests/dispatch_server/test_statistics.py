"""Statistics (汇总统计) through the real server: a history made with real publishers, units, a
party and the API, and every figure of ``GET /api/stats`` checked against what the test did and
against a count the test makes itself from the source records (the ledger's segments and gaps,
the stored rows' times) — never by asking the server's statistics code. Periods at the edges of
the court's time zone; bad parameters; who may read them."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import time
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from typing import Any, Iterable
from urllib.parse import quote
from zoneinfo import ZoneInfo

import aiohttp
import openpyxl
import pytest
from aiortc import RTCConfiguration

from dispatch_server.actions import Action
from dispatch_server.appkeys import ARCHIVE, DATABASE
from dispatch_server.errors import BadRequest
from dispatch_server.statistics import make_period, reference_time
from field_client.encoded_loop import EncodedAudioLoop, EncodedLoop
from tests.conftest import LiveServer
from tests.dispatch_server.test_actions import api
from tests.dispatch_server.test_party import party_login, wait_state, watch_and_release
from tests.recordings.archive_support import entries
from tests.recordings.test_recorder import FAST, ArchiveEvents, stop_sending, unpublish
from tests.support.peers import make_publisher, whip_publish
from tests.support.unit_client import RawUnit
from utctime import parse_iso

pytestmark = pytest.mark.both_engines  # the outbox, actions, alerts... on SQLite and on PostgreSQL

ZONE = ZoneInfo("Asia/Shanghai")
CASE = "（2026）冀0916执123号"
GROUPINGS = ("type", "judge", "officer", "unit", "team")


class Clock:
    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


def at(text: str) -> float:
    """Epoch seconds of a Beijing wall-clock time ``YYYY-MM-DD HH:MM``."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=ZONE).timestamp()


# -- periods -----------------------------------------------------------------------------------------

def test_periods_are_whole_days_of_the_courts_zone() -> None:
    now = at("2026-12-02 10:00")
    week = make_period("week", "2026-12-06", None, None, ZONE, now)  # a Sunday: its week began on Monday 11-30
    assert (week.first, week.last) == (date(2026, 11, 30), date(2026, 12, 6))
    assert week.start == at("2026-11-30 00:00") and week.end == at("2026-12-07 00:00")
    month = make_period("month", "2026-11-30", None, None, ZONE, now)
    assert (month.first, month.last) == (date(2026, 11, 1), date(2026, 11, 30))
    late = at("2026-11-30 23:30")  # 15:30 UTC: still November in Beijing
    assert month.contains(late) and not make_period("month", "2026-12-01", None, None, ZONE, now).contains(late)
    assert make_period("day", None, None, None, ZONE, now).first == date(2026, 12, 2)  # today in Beijing
    assert make_period("month", "2026-02-10", None, None, ZONE, now).last == date(2026, 2, 28)
    custom = make_period("custom", None, "2026-01-01", "2026-01-01", ZONE, now)
    assert custom.end - custom.start == 86400
    cases: list[tuple[tuple[str, str | None, str | None, str | None], str]] = [
        (("year", None, None, None), "period"), (("day", "2026-13-01", None, None), "date"),
        (("custom", None, "2026-01-02", None), "to"), (("custom", None, "x", "2026-01-01"), "from"),
        (("custom", None, "2026-01-02", "2026-01-01"), "to"),
        # at the ends of the calendar, midnight in the court's zone is no datetime (found by the API fuzz campaign)
        (("month", "0001-01-01", None, None), "date"), (("week", "9999-12-31", None, None), "date"),
        (("custom", None, "0001-01-01", "0001-01-02"), "from"), (("custom", None, "9998-12-30", "9999-12-31"), "to")]
    for args, name in cases:
        kind, day, first, last = args
        with pytest.raises(BadRequest) as err:
            make_period(kind, day, first, last, ZONE, now)
        assert name in str(err.value), (args, str(err.value))


async def test_an_action_at_2330_on_the_last_day_of_a_month_belongs_to_that_month(
        make_live: Any, http: aiohttp.ClientSession) -> None:
    clock = Clock(at("2026-11-30 23:30") - time.time())
    live: LiveServer = await make_live(clock=clock, archive={"enabled": False})
    live.add_unit("bc-01")
    live.add_user("op", "operator")
    live.add_user("sup", "supervisor")
    op, sup = await live.login("op"), await live.login("sup")
    _, action = await api(http, "POST", f"{live.url}/api/actions", op,
                          {"case_number": CASE, "title": "夜间查封", "type": "seizure", "units": ["bc-01"]})
    assert (await api(http, "POST", f"{live.url}/api/actions/{action['id']}/start", op))[0] == 200
    status, ins = await api(http, "POST", f"{live.url}/api/instructions", sup,
                            {"unit": "bc-01", "type": "text", "text": "注意安全", "ttl_s": 3600})
    assert status == 201
    clock.offset += 3600  # 00:30 on 1 December
    assert (await api(http, "POST", f"{live.url}/api/actions/{action['id']}/end", op))[0] == 200

    async def figures(query: str) -> dict[str, Any]:
        status, body = await api(http, "GET", f"{live.url}/api/stats?{query}", sup)
        assert status == 200, body
        return dict(body["totals"])

    for query, n in (("period=month&date=2026-11-01", 1), ("period=month&date=2026-12-15", 0),
                     ("period=day&date=2026-11-30", 1), ("period=day&date=2026-12-01", 0),
                     ("period=week&date=2026-12-06", 1), ("period=week&date=2026-12-07", 0),
                     ("period=custom&from=2026-11-30&to=2026-11-30", 1), ("period=month", 0)):
        got = await figures(query)
        assert got["actions"]["started"] == n and got["actions"]["ended"] == n, query
        assert got["instructions"]["total"] == n, query
        if n:
            assert got["actions"]["duration_s"]["total"] == pytest.approx(3600, abs=2)


async def test_bad_parameters_are_400_naming_the_parameter_and_only_supervisors_auditors_admins_read(
        live: LiveServer, http: aiohttp.ClientSession) -> None:
    for name, role in (("op", "operator"), ("sup", "supervisor"), ("aud", "auditor"), ("adm", "admin")):
        live.add_user(name, role)
    tokens = {n: await live.login(n) for n in ("op", "sup", "aud", "adm")}
    for query, name in (("period=year", "period"), ("group=court", "group"), ("date=2026-02-30", "date"),
                        ("period=custom&from=2026-01-01", "to"), ("period=custom&from=1&to=2026-01-01", "from"),
                        ("date=0001-01-01", "date"), ("period=week&date=9999-12-31", "date"),
                        ("format=pdf", "format")):
        status, body = await api(http, "GET", f"{live.url}/api/stats?{query}", tokens["sup"])
        assert status == 400 and name in body["error"]["message"], (query, body)
    status, body = await api(http, "GET", f"{live.url}/api/stats/actions?figure=nothing", tokens["sup"])
    assert status == 400 and "figure" in body["error"]["message"]
    status, body = await api(http, "GET", f"{live.url}/api/stats/actions", tokens["sup"])
    assert status == 400 and "figure" in body["error"]["message"]
    for who in ("sup", "aud", "adm"):
        assert (await api(http, "GET", f"{live.url}/api/stats", tokens[who]))[0] == 200
    assert (await api(http, "GET", f"{live.url}/api/stats", tokens["op"]))[0] == 403
    assert (await api(http, "GET", f"{live.url}/api/stats/actions?figure=planned", tokens["op"]))[0] == 403


async def test_a_planned_action_can_be_cancelled_once(live: LiveServer, http: aiohttp.ClientSession) -> None:
    live.add_user("op", "operator")
    live.add_user("sup", "supervisor")
    op = await live.login("op")
    _, a = await api(http, "POST", f"{live.url}/api/actions", op, {"case_number": CASE, "title": "改期"})
    status, cancelled = await api(http, "POST", f"{live.url}/api/actions/{a['id']}/cancel", op)
    assert status == 200 and cancelled["state"] == "cancelled" and cancelled["cancelled_at"]
    for verb in ("cancel", "start"):
        status, body = await api(http, "POST", f"{live.url}/api/actions/{a['id']}/{verb}", op)
        assert status == 409 and body["error"]["code"] == "bad_transition"
    status, body = await api(http, "PATCH", f"{live.url}/api/actions/{a['id']}", op, {"title": "x"})
    assert status == 409
    _, b = await api(http, "POST", f"{live.url}/api/actions", op, {"case_number": CASE, "title": "运行中"})
    await api(http, "POST", f"{live.url}/api/actions/{b['id']}/start", op)
    assert (await api(http, "POST", f"{live.url}/api/actions/{b['id']}/cancel", op))[0] == 409
    _, trail = await api(http, "GET", f"{live.url}/api/audit?subject={a['id']}", await live.login("sup"))
    assert [e["verb"] for e in trail["entries"]][0] == "action.cancelled"


# -- a realistic history --------------------------------------------------------------------------------

def pct(values: Iterable[float], points: tuple[int, ...]) -> dict[str, Any]:
    v = sorted(values)
    out: dict[str, Any] = {"n": len(v)}
    for p in points:
        out[f"p{p}"] = v[math.ceil(p * len(v) / 100) - 1] if v else None
    out["max"] = v[-1] if v else None
    return out


def covered_s(by_unit: dict[str, list[tuple[float, float]]], start: float, end: float, required: int) -> float:
    """Time in [start, end) with at least ``required`` units recording (a sweep over every boundary)."""
    cuts = sorted({start, end, *(t for spans in by_unit.values() for s, e in spans for t in (s, e) if start < t < end)})
    total = 0.0
    for a, b in zip(cuts, cuts[1:], strict=False):
        mid = (a + b) / 2
        if sum(any(s <= mid < e for s, e in spans) for spans in by_unit.values()) >= required:
            total += b - a
    return total


def rows(live: LiveServer, sql: str) -> list[tuple[Any, ...]]:
    """The stored records as they are (the source the figures are made of, read by the test)."""
    return live.app[DATABASE].query(sql)


def expected(live: LiveServer, group: str, since: float, until: float, required: dict[str, int],
             now: float) -> dict[str, Any]:
    """Every figure of ``group`` counted by the test, from the stored records and the ledger."""
    actions = {a.id: a for a in (Action.from_doc(d) for (d,) in rows(live, "SELECT doc FROM actions"))}

    def keys(a: Action | None, unit: str | None = None) -> list[str]:
        if group == "unit" and unit is not None:
            return [unit]
        if a is None:
            return [""]
        return {"type": [a.type], "judge": [a.judge], "officer": list(a.officers) or [""],
                "unit": list(a.units) or [""], "team": ["+".join(sorted(a.units))]}[group]

    log = entries(live.settings.archive_dir)
    recs = {e["data"]["recording_id"]: e["data"] for e in log if e["type"] == "recording_opened"}
    segs = [(recs[e["data"]["recording_id"]], parse_iso(e["data"]["start"]), parse_iso(e["data"]["end"]),
             e["data"]["bytes"]) for e in log if e["type"] == "segment_sealed"]
    gaps = [(recs[e["data"]["recording_id"]], e["data"]) for e in log if e["type"] == "gap"]
    by_unit: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for rec, s, e, _ in segs:
        by_unit[rec["unit_id"]].append((s, e))

    groups: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(list))

    def put(ks: list[str], name: str, value: Any) -> None:
        for k in [*dict.fromkeys(ks), "*"]:
            groups[k][name].append(value)

    for a in actions.values():
        if not since <= reference_time(a) < until:
            continue
        put(keys(a), "action", a)
        if a.started_at is not None:
            end = a.ended_at if a.ended_at is not None else now
            team = {u: by_unit.get(u, []) for u in a.units}
            put(keys(a), "coverage", (covered_s(team, a.started_at, end, required[a.type]), end - a.started_at))
    for rec, s, e, _ in segs:
        if min(e, until) > max(s, since):
            put(keys(actions.get(rec.get("action_id") or ""), rec["unit_id"]), "recorded",
                min(e, until) - max(s, since))
    for rec, g in gaps:
        if since <= parse_iso(g["start"]) < until:
            seconds = g["seconds"] if g.get("seconds") is not None else parse_iso(g["end"]) - parse_iso(g["start"])
            put(keys(actions.get(rec.get("action_id") or ""), rec["unit_id"]), "gap", (g["cause"], seconds))
    for aid, unit, typ, state, created, delivered, acked in rows(
            live, "SELECT action_id, unit_id, type, state, created_at, delivered_at, acknowledged_at "
                  "FROM instructions"):
        if since <= created < until:
            put(keys(actions.get(aid or ""), unit), "ins", (typ, state, created, delivered, acked))
    for (doc,) in rows(live, "SELECT doc FROM alerts"):
        al = json.loads(doc)
        if since <= al["created_at"] < until:
            put(keys(actions.get(al["action_id"] or ""), al["unit_id"]), "alert", al)
    links = rows(live, "SELECT request_id, uses, revoked_at FROM party_links")
    for (doc,) in rows(live, "SELECT doc FROM footage_requests"):
        r = json.loads(doc)
        if since <= r["created_at"] < until:
            put(keys(actions.get(r["action_id"])), "request", r)

    def figures(g: dict[str, list[Any]]) -> dict[str, Any]:
        acts = g["action"]
        durations = [a.ended_at - a.started_at for a in acts if a.state == "ended"]
        cov = g["coverage"]
        gap_causes: dict[str, list[float]] = defaultdict(list)
        for cause, seconds in g["gap"]:
            gap_causes[cause].append(seconds)
        ins = g["ins"]
        states = Counter(i[1] for i in ins)
        alerts = g["alert"]
        decisions = [(r, next((h for h in r["history"] if h["what"] in ("approve", "refuse")), None))
                     for r in g["request"]]
        mine = [link for link in links if link[0] in {r["id"] for r in g["request"]}]
        return {
            "actions": {"planned": len(acts), "started": sum(a.started_at is not None for a in acts),
                        "ended": sum(a.state == "ended" for a in acts),
                        "cancelled": sum(a.state == "cancelled" for a in acts),
                        "running": sum(a.state == "running" for a in acts),
                        "duration_s": {"total": sum(durations),
                                       "mean": sum(durations) / len(durations) if durations else None,
                                       **pct(durations, (50,))}},
            "recording": {
                "recorded_s": sum(g["recorded"]), "recorded_hours": sum(g["recorded"]) / 3600,
                "coverage": {"actions": len(cov), "full": sum(c >= t - 1e-6 for c, t in cov),
                             "mean_ratio": sum(c / t for c, t in cov) / len(cov) if cov else None,
                             "ratio": sum(c for c, _ in cov) / sum(t for _, t in cov) if cov else None,
                             "covered_s": sum(c for c, _ in cov), "action_s": sum(t for _, t in cov)},
                "gaps": {"count": len(g["gap"]), "seconds": sum(s for _, s in g["gap"]),
                         "by_cause": {c: {"count": len(v), "seconds": sum(v)} for c, v in gap_causes.items()}}},
            "instructions": {"total": len(ins), "by_type": dict(Counter(i[0] for i in ins)), "by_state": dict(states),
                             "delivery_s": pct([i[3] - i[2] for i in ins if i[3] is not None], (50, 90, 99)),
                             "ack_s": pct([i[4] - i[3] for i in ins if i[3] is not None and i[4] is not None],
                                          (50, 90, 99)),
                             "expired": states["expired"], "refused": states["refused"]},
            "alerts": {"total": len(alerts), "by_kind": dict(Counter(a["kind"] for a in alerts)),
                       "sos": sum(a["kind"] == "sos" for a in alerts),
                       "sos_ack_s": pct([a["acknowledged_at"] - a["created_at"] for a in alerts
                                         if a["kind"] == "sos" and a["acknowledged_at"] is not None], (50, 90)),
                       "unacknowledged": sum(a["state"] == "open" for a in alerts),
                       "escalated": sum(bool(a["escalated"]) for a in alerts)},
            "requests": {"received": len(g["request"]),
                         "decided": {k: sum(1 for _, d in decisions if d and d["what"] == k)
                                     for k in ("approve", "refuse")},
                         "more_info": sum(any(h["what"] == "more_info" for h in r["history"]) for r in g["request"]),
                         "decision_s": pct([d["at"] - r["created_at"] for r, d in decisions if d], (50, 90)),
                         "exports": sum(h["what"] == "exported" for r in g["request"] for h in r["history"]),
                         "downloads": sum(link[1] for link in mine),
                         "links_revoked": sum(link[2] is not None for link in mine)},
        }

    return {"totals": figures(groups.pop("*")), "groups": {k: figures(v) for k, v in groups.items()}}


def same(got: Any, want: Any, where: str = "") -> list[str]:
    """Differences between the server's figures and the test's (floats to the server's rounding)."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{where}: {got!r} is not {want!r}"]
        return [d for k in set(want) | set(got) for d in same(got.get(k), want.get(k), f"{where}.{k}")]
    if isinstance(want, float) or isinstance(got, float):
        if got is None or want is None or abs(float(got) - float(want)) > 0.002:
            return [f"{where}: server {got!r}, test {want!r}"]
        return []
    return [] if got == want else [f"{where}: server {got!r}, test {want!r}"]


async def publish(http: aiohttp.ClientSession, live: LiveServer, unit: str, token: str, vp8: EncodedLoop,
                  opus: EncodedAudioLoop) -> Any:
    pub = await make_publisher(vp8, opus, config=RTCConfiguration(iceServers=[]))  # no STUN: see HISTORY_ARCHIVE
    await whip_publish(http, live.url, unit, token, pub)
    return pub


async def stop(http: aiohttp.ClientSession, live: LiveServer, pub: Any, token: str) -> None:
    await stop_sending(pub)
    await unpublish(http, live, pub, token)
    await pub.close()


async def until(predicate: Any, what: str, timeout: float = 30.0) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        assert time.monotonic() < end, f"{what} did not happen within {timeout} s"
        await asyncio.sleep(0.1)


# The history's archive. 1 s segments (the shortest the config allows): each wait for a sealed
# segment is about a second. The reconnect grace must outlast bc-02's drop and return (WHIP DELETE
# to the new publisher's first frame: ~0.1 s, 0.2 s on a loaded machine; its publishers ask no
# STUN server, which can take 5 s where DNS times out); the test waits for the gap.
# Every second of it is also waited once: bc-01's last recording, opened when the seizure ends
# while it still publishes, closes only when the grace runs out.
HISTORY_ARCHIVE = {**FAST, "segment_s": 1.0, "reconnect_grace_s": 5.0}


async def make_history(live: LiveServer, http: aiohttp.ClientSession, vp8: EncodedLoop,
                       opus: EncodedAudioLoop) -> dict[str, Any]:
    """Four actions (a seizure whose second recorder drops and comes back, then drops for good; a
    service with an offline vehicle; a cancelled search; an eviction still planned), instructions
    done, refused, expired and acknowledged, two SOS (one acknowledged after it escalated, one
    never), and a party's request through more information, approval, export, download and a
    revoked link, plus a refused request."""
    tokens = {u: live.add_unit(u, "vehicle" if u.startswith("veh") else "body") for u in ("bc-01", "bc-02", "veh-01")}
    for name, role in (("op", "operator"), ("sup", "supervisor")):
        live.add_user(name, role)
    op, sup = await live.login("op"), await live.login("sup")
    soon = datetime.fromtimestamp(time.time() + 600, ZONE).isoformat()
    base = {"case_number": CASE, "address": "石家庄市 某路 1 号", "planned_at": soon}
    made = {}
    for name, fields in (
            ("seizure", {"title": "查封车辆", "type": "seizure", "units": ["bc-02", "bc-01"],
                         "officers": ["王法警", "赵法警"], "judge": "李法官"}),
            ("service", {"title": "送达文书", "type": "service", "units": ["veh-01"], "officers": ["王法警"],
                         "judge": "张法官"}),
            ("search", {"title": "搜查（取消）", "type": "search", "units": ["bc-01"], "judge": "李法官"}),
            ("eviction", {"title": "腾退（待定）", "type": "eviction"})):
        status, made[name] = await api(http, "POST", f"{live.url}/api/actions", op, {**base, **fields})
        assert status == 201, made[name]
    ids = {k: v["id"] for k, v in made.items()}
    assert (await api(http, "POST", f"{live.url}/api/actions/{ids['search']}/cancel", op))[0] == 200
    for name in ("seizure", "service"):
        assert (await api(http, "POST", f"{live.url}/api/actions/{ids[name]}/start", op))[0] == 200

    events = ArchiveEvents(live)
    pubs = {u: await publish(http, live, u, tokens[u], vp8, opus) for u in ("bc-01", "bc-02")}

    await events.wait("sealed", 3, timeout=60)
    await stop(http, live, pubs.pop("bc-02"), tokens["bc-02"])  # bc-02 drops ...
    pubs["bc-02"] = await publish(http, live, "bc-02", tokens["bc-02"], vp8, opus)  # ... and comes back
    await events.wait("gap", 1, timeout=60)  # back within the grace: one recording with a gap
    n = len([1 for k, _ in events.seen if k == "sealed"])
    await events.wait("sealed", n + 2, timeout=60)
    await stop(http, live, pubs.pop("bc-02"), tokens["bc-02"])  # and drops for good

    # instructions: bc-01 does one and refuses one; bc-02 (gone from the picture) never answers;
    # veh-01 is offline and its instruction expires
    unit = await RawUnit(live.url, "bc-01", tokens["bc-01"]).connect()
    ins = {}
    for name, body in (("done", {"unit": "bc-01", "type": "text", "text": "拍摄车牌"}),
                       ("refused", {"unit": "bc-01", "type": "goto", "lat": 38.05, "lon": 114.52}),
                       ("expired", {"unit": "veh-01", "type": "text", "text": "到东门", "ttl_s": 0.5}),
                       ("acked", {"unit": "bc-01", "type": "snapshot"})):
        status, out = await api(http, "POST", f"{live.url}/api/instructions", op, body)
        assert status == 201, out
        ins[name] = out["id"]
    got = await unit.call("sync", {"after_seq": 0})
    mine = [i["id"] for i in got["instructions"]]
    assert (await unit.call("received", {"ids": mine}))["delivered"] == mine
    await unit.call("instruction_state", {"id": ins["done"], "state": "acknowledged"})
    await unit.call("instruction_state", {"id": ins["done"], "state": "done"})
    await unit.call("instruction_state", {"id": ins["refused"], "state": "refused", "reason": "道路封闭"})
    await unit.call("instruction_state", {"id": ins["acked"], "state": "acknowledged"})

    async def expired() -> bool:
        _, body = await api(http, "GET", f"{live.url}/api/instructions/{ins['expired']}", op)
        return bool(body["state"] == "expired")

    await until(expired, "the TTL of veh-01's instruction")

    # SOS: bc-01's is acknowledged late (after it escalated); veh-01's never
    async with http.post(f"{live.url}/api/units/bc-01/sos", json={"lat": 38.04, "lon": 114.51},
                         headers={"Authorization": f"Bearer {tokens['bc-01']}"}) as r:
        sos = await r.json()
        assert r.status == 201, sos
    async with http.post(f"{live.url}/api/units/veh-01/sos", json={},
                         headers={"Authorization": f"Bearer {tokens['veh-01']}"}) as r:
        assert r.status == 201

    async def escalated() -> bool:
        _, body = await api(http, "GET", f"{live.url}/api/alerts", op)
        return all(a["escalated"] for a in body["alerts"] if a["kind"] == "sos")

    await until(escalated, "escalation of the SOS")
    assert (await api(http, "POST", f"{live.url}/api/alerts/{sos['id']}/ack", op))[0] == 200
    await unit.close()

    # bc-01 records a little longer, then the seizure ends; the service ends without a recording
    n = len([1 for k, _ in events.seen if k == "sealed"])
    await events.wait("sealed", n + 1, timeout=60)
    for name in ("seizure", "service"):
        assert (await api(http, "POST", f"{live.url}/api/actions/{ids[name]}/end", op))[0] == 200
    await stop(http, live, pubs.pop("bc-01"), tokens["bc-01"])

    async def all_closed() -> bool:
        return not live.app[ARCHIVE].active

    await until(all_closed, "every recording closed", timeout=90)

    # a party: request → more information → reply → approval → export → release → download → revoked
    _, code = await api(http, "POST", f"{live.url}/api/party/codes", sup, {"case_number": CASE, "party_name": "张三"})
    _, party = await party_login(http, live, code["code"])
    ptoken = party["token"]
    _, req = await api(http, "POST", f"{live.url}/api/party/requests", ptoken,
                       {"action_id": ids["seizure"], "reason": "查看执行过程"})
    await api(http, "POST", f"{live.url}/api/footage-requests/{req['id']}/decision", sup,
              {"decision": "more_info", "reason": "请说明关系"})
    await api(http, "POST", f"{live.url}/api/party/requests/{req['id']}/reply", ptoken, {"message": "我是被执行人"})
    status, doc = await api(http, "POST", f"{live.url}/api/footage-requests/{req['id']}/decision", sup,
                            {"decision": "approve", "reason": "依法公开"})
    assert status == 200, doc
    assert (await api(http, "POST", f"{live.url}/api/footage-requests/{req['id']}/export", sup))[0] == 202
    await wait_state(http, live, sup, req["id"], "review", timeout=120)
    doc = await watch_and_release(http, live, sup, req["id"])
    _, theirs = await api(http, "GET", f"{live.url}/api/party/requests", ptoken)
    link = theirs["requests"][0]["links"][0]
    async with http.get(live.url + link["url"]) as r:
        assert r.status == 200 and len(await r.read()) > 0
    assert (await api(http, "POST", f"{live.url}/api/links/{link['id']}/revoke", sup))[0] == 200
    _, req2 = await api(http, "POST", f"{live.url}/api/party/requests", ptoken,
                        {"action_id": ids["seizure"], "reason": "再看一次"})
    await api(http, "POST", f"{live.url}/api/footage-requests/{req2['id']}/decision", sup,
              {"decision": "refuse", "reason": "已提供"})
    return {"ids": ids, "sup": sup, "op": op}


@pytest.mark.timeout(400)
async def test_every_figure_of_a_realistic_history_matches_the_tests_own_count(
        make_live: Any, http: aiohttp.ClientSession, vp8_loop: EncodedLoop, opus_loop: EncodedAudioLoop) -> None:
    live: LiveServer = await make_live(archive=HISTORY_ARCHIVE,
                                       alerts={"escalate_after_s": 1.0, "sweep_interval_s": 0.1})
    history = await make_history(live, http, vp8_loop, opus_loop)
    ids, sup = history["ids"], history["sup"]
    today = datetime.now(ZONE).date()
    first, last = today - timedelta(days=1), today + timedelta(days=1)  # the history may cross midnight
    query = f"period=custom&from={first}&to={last}"
    period = make_period("custom", None, str(first), str(last), ZONE, time.time())
    required = {t: live.settings.procedure.rule_for(t).min_recorders for t in
                ("seizure", "search", "eviction", "service", "other")}
    assert required["seizure"] == 2

    for group in GROUPINGS:
        status, stats = await api(http, "GET", f"{live.url}/api/stats?{query}&group={group}", sup)
        assert status == 200, stats
        want = expected(live, group, period.start, period.end, required, time.time())
        assert same(stats["totals"], want["totals"], "totals") == []
        assert {g["key"] for g in stats["groups"]} == set(want["groups"]), group
        for g in stats["groups"]:
            figures = {k: v for k, v in g.items() if k != "key"}
            assert same(figures, want["groups"][g["key"]], f"{group}:{g['key']}") == []

    # What the test did, said plainly (the comparison above holds them too).
    t = stats["totals"]
    assert (t["actions"]["planned"], t["actions"]["started"], t["actions"]["ended"], t["actions"]["cancelled"]) == \
        (4, 2, 2, 1)
    assert t["instructions"]["expired"] == 1 and t["instructions"]["refused"] == 1
    assert t["alerts"]["sos"] == 2 and t["alerts"]["sos_ack_s"]["n"] == 1 and t["alerts"]["sos_ack_s"]["max"] >= 1.0
    assert t["alerts"]["escalated"] >= 2 and t["alerts"]["unacknowledged"] >= 1
    assert t["requests"]["received"] == 2 and t["requests"]["decided"] == {"approve": 1, "refuse": 1}
    assert (t["requests"]["more_info"], t["requests"]["exports"], t["requests"]["downloads"],
            t["requests"]["links_revoked"]) == (1, 1, 1, 1)
    assert t["recording"]["gaps"]["count"] >= 1, "bc-02 dropped and came back: a gap"
    _, typed = await api(http, "GET", f"{live.url}/api/stats?{query}&group=type", sup)
    by_type = {g["key"]: g for g in typed["groups"]}
    assert 0 < by_type["seizure"]["recording"]["coverage"]["ratio"] < 1, "bc-02 dropped: not two recorders throughout"
    assert by_type["service"]["recording"]["coverage"]["ratio"] == 0, "veh-01 never recorded"
    ev = stats["evidence"]
    sealed = [e for e in entries(live.settings.archive_dir) if e["type"] == "segment_sealed"]
    assert ev["segments_sealed"] == len(sealed) and ev["sealed_bytes"] == sum(e["data"]["bytes"] for e in sealed)
    assert ev["archive_bytes"] == ev["sealed_bytes"] == ev["growth_bytes"] and ev["deleted_bytes"] == 0
    assert ev["last_verification"]["ok"] is True and ev["last_verification"]["at"]

    # the actions behind a figure
    async def behind(figure: str, key: str | None = None, group: str = "type") -> list[str]:
        k = f"&key={quote(key)}" if key is not None else ""
        status, body = await api(http, "GET", f"{live.url}/api/stats/actions?{query}&group={group}&figure={figure}{k}",
                                 sup)
        assert status == 200, body
        assert all(a["report_url"] == f"/report/action?id={a['id']}" for a in body["actions"])
        return [a["id"] for a in body["actions"]]

    assert await behind("cancelled") == [ids["search"]]
    assert await behind("undercovered", "seizure") == [ids["seizure"]]
    assert await behind("expired") == [ids["service"]]
    assert set(await behind("sos")) == {ids["seizure"], ids["service"]}
    assert set(await behind("planned", "李法官", "judge")) == {ids["seizure"], ids["search"]}
    assert await behind("requests", "bc-01+bc-02", "team") == [ids["seizure"]]
    assert await behind("running") == []

    # the files hold the same numbers
    async with http.get(f"{live.url}/api/stats?{query}&group=type&format=csv",
                        headers={"Authorization": f"Bearer {sup}"}) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
        raw = await r.read()
    assert raw.startswith("\ufeff".encode())
    check_files_match(typed, csv_tables(raw.decode("utf-8-sig")))
    async with http.get(f"{live.url}/api/stats?{query}&group=type&format=xlsx",
                        headers={"Authorization": f"Bearer {sup}"}) as r:
        assert r.status == 200
        check_files_match(typed, xlsx_tables(await r.read()))


def csv_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """A CSV of the statistics read back: table name -> rows as {column: value}."""
    out: dict[str, list[dict[str, str]]] = {}
    lines = list(csv.reader(io.StringIO(text)))
    i = 0
    while i < len(lines):
        if not lines[i]:
            i += 1
            continue
        name, header = lines[i][0], lines[i + 1]
        i += 2
        out[name] = []
        while i < len(lines) and lines[i]:
            out[name].append(dict(zip(header, lines[i], strict=True)))
            i += 1
    return out


def xlsx_tables(data: bytes) -> dict[str, list[dict[str, Any]]]:
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    out = {}
    for sheet in book.worksheets:
        values = [list(r) for r in sheet.iter_rows(values_only=True)]
        width = len(values[0])  # a reader may leave out empty cells at a row's end
        out[sheet.title] = [dict(zip(values[0], [*r, *[None] * (width - len(r))], strict=True)) for r in values[1:]]
    return out


def check_files_match(stats: dict[str, Any], tables: dict[str, list[dict[str, Any]]]) -> None:
    """The totals row (合计) and the seizure row (查封扣押) of a file against the API's figures."""
    assert {"行动", "录像", "指令", "告警", "调取申请", "证据档案"} <= set(tables)
    rows_of = {name: {r["行动类型"]: r for r in rs} for name, rs in tables.items() if name != "证据档案"}
    by_type = {g["key"]: g for g in stats["groups"]}
    for label, fig in (("合计", stats["totals"]), ("查封扣押", by_type["seizure"])):
        def num(table: str, column: str, label: str = label) -> float:
            return float(rows_of[table][label][column])

        a, rec, ins, al, req = (fig["actions"], fig["recording"], fig["instructions"], fig["alerts"],
                                fig["requests"])
        assert [num("行动", c) for c in ("计划行动", "已开始", "已结束", "已取消", "进行中")] == \
            [a["planned"], a["started"], a["ended"], a["cancelled"], a["running"]]
        assert num("行动", "总时长（秒）") == pytest.approx(a["duration_s"]["total"])
        assert num("录像", "录像时长（秒）") == pytest.approx(rec["recorded_s"])
        assert num("录像", "总覆盖率") == pytest.approx(rec["coverage"]["ratio"])
        assert num("录像", "中断次数") == rec["gaps"]["count"]
        assert num("指令", "指令总数") == ins["total"] and num("指令", "已过期") == ins["expired"]
        assert num("指令", "已拒绝") == ins["refused"]
        if ins["delivery_s"]["p50"] is not None:
            assert num("指令", "送达用时P50（秒）") == pytest.approx(ins["delivery_s"]["p50"])
        assert num("告警", "紧急求助次数") == al["sos"] and num("告警", "未确认") == al["unacknowledged"]
        assert num("告警", "已升级") == al["escalated"]
        assert [num("调取申请", c) for c in ("收到申请", "批准", "驳回", "导出", "下载次数", "撤销链接")] == \
            [req["received"], req["decided"]["approve"], req["decided"]["refuse"], req["exports"], req["downloads"],
             req["links_revoked"]]
    ev = tables["证据档案"][0]
    assert float(ev["本期封存片段"]) == stats["evidence"]["segments_sealed"]
    assert float(ev["档案总大小（字节）"]) == stats["evidence"]["archive_bytes"]


QUIET = {"escalate_after_s": 30 * 86400.0}  # no alert changes behind the test's back


async def test_a_past_days_figures_are_kept_and_follow_changes_made_to_it_later(
        make_live: Any, http: aiohttp.ClientSession) -> None:
    """Figures of ended days come from kept day summaries: an instruction cancelled and an SOS
    acknowledged the next morning still change yesterday's figures, and a second node on the same
    data reads the same."""
    yesterday = datetime.now(ZONE).date() - timedelta(days=1)
    clock = Clock(at(f"{yesterday} 10:00") - time.time())
    live: LiveServer = await make_live(clock=clock, archive={"enabled": False}, alerts=QUIET)
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    live.add_user("sup", "supervisor")
    op = await live.login("op")
    _, action = await api(http, "POST", f"{live.url}/api/actions", op,
                          {"case_number": CASE, "title": "查封", "type": "seizure", "units": ["bc-01"]})
    assert (await api(http, "POST", f"{live.url}/api/actions/{action['id']}/start", op))[0] == 200
    sent = [(await api(http, "POST", f"{live.url}/api/instructions", op,
                       {"unit": "bc-01", "type": "text", "text": f"第{n}条", "ttl_s": 7 * 86400}))[1] for n in (1, 2)]
    async with http.post(f"{live.url}/api/units/bc-01/sos", headers={"Authorization": f"Bearer {token}"},
                         json={}) as r:
        assert r.status == 201, await r.text()
        sos = await r.json()
    clock.offset += 3600
    assert (await api(http, "POST", f"{live.url}/api/actions/{action['id']}/end", op))[0] == 200

    clock.offset = 0.0  # the next day: yesterday has ended
    op, sup = await live.login("op"), await live.login("sup")
    query = f"{live.url}/api/stats?period=day&date={yesterday}&group=judge"

    async def totals(url: str = query) -> dict[str, Any]:
        status, body = await api(http, "GET", url, sup)
        assert status == 200, body
        return dict(body["totals"])

    def counted() -> tuple[dict[str, int], int]:
        states = Counter(s for (s,) in rows(live, "SELECT state FROM instructions"))
        still_open = rows(live, "SELECT COUNT(*) FROM alerts WHERE state = 'open'")[0][0]
        return dict(states), still_open

    first = await totals()
    assert first["instructions"]["by_state"] == counted()[0] == {"queued": 2}
    assert first["alerts"]["sos"] == 1 and first["alerts"]["sos_ack_s"]["n"] == 0
    day_start = at(f"{yesterday} 00:00")
    assert rows(live, f"SELECT COUNT(*) FROM stats_days WHERE start = {day_start}")[0][0] == 1, "yesterday is kept"

    assert (await api(http, "POST", f"{live.url}/api/instructions/{sent[0]['id']}/cancel", op))[0] == 200
    assert (await api(http, "POST", f"{live.url}/api/alerts/{sos['id']}/ack", op))[0] == 200
    later = await totals()
    states, still_open = counted()
    assert later["instructions"]["by_state"] == states == {"queued": 1, "cancelled": 1}
    assert later["alerts"]["sos_ack_s"]["n"] == 1 and later["alerts"]["sos_ack_s"]["max"] > 3600
    assert later["alerts"]["unacknowledged"] == still_open == first["alerts"]["unacknowledged"] - 1

    other: LiveServer = await make_live(archive={"enabled": False}, alerts=QUIET)  # a second node, same data
    assert await totals(query.replace(live.url, other.url)) == await totals() == later

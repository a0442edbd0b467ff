"""Enforcement actions: case numbers, lifecycle, team membership, links to the roster."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from dispatch_server.casenumber import CaseNumberError, parse_case_number
from dispatch_server.running_actions import RunningActions
from tests.conftest import LiveServer

pytestmark = pytest.mark.both_engines  # the outbox, actions, alerts... on SQLite and on PostgreSQL


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("（2026）冀0916执123号", "（2026）冀0916执123号"),
        ("(2026)冀0916执123号", "（2026）冀0916执123号"),
        ("〔2025〕京0105执恢45号", "（2025）京0105执恢45号"),
        (" (2024) 粤03执保7号 ", "（2024）粤03执保7号"),
    ],
)
def test_case_numbers_parse_and_normalise(text: str, normal: str) -> None:
    assert str(parse_case_number(text)) == normal


@pytest.mark.parametrize("text", [
    "", "2026冀0916执123号", "（2026）冀0916民123号", "（26）冀0916执1号",
    "（2026）XX0916执1号", "（2026）冀0916执号", "（1800）冀0916执1号", "（2026）冀0916执1",
])
def test_bad_case_numbers_are_refused(text: str) -> None:
    with pytest.raises(CaseNumberError):
        parse_case_number(text)


async def api(http: aiohttp.ClientSession, method: str, url: str, token: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.json()


ACTION = {
    "case_number": "(2026)冀0916执123号", "title": "查封 某公司 车辆", "type": "seizure",
    "address": "石家庄市 某路 1 号", "area": {"type": "circle", "lat": 38.04, "lon": 114.51, "radius_m": 200},
    "planned_at": "2026-11-28T01:00:00Z", "units": ["bc-01", "veh-01"], "officers": ["王法警"], "judge": "李法官",
}


async def test_action_lifecycle_and_roster_link(live: LiveServer, http: aiohttp.ClientSession) -> None:
    live.add_unit("bc-01")
    live.add_unit("veh-01", "vehicle")
    live.add_user("op", "operator")
    live.add_user("aud", "auditor")
    op, aud = await live.login("op"), await live.login("aud")
    base = f"{live.url}/api/actions"

    status, body = await api(http, "POST", base, aud, ACTION)
    assert status == 403
    status, action = await api(http, "POST", base, op, ACTION)
    assert status == 201, action
    assert action["case_number"] == "（2026）冀0916执123号" and action["state"] == "planned"
    aid = action["id"]

    bad = [
        ({**ACTION, "case_number": "2026-123"}, 400, "bad_case_number"),
        ({**ACTION, "units": ["ghost"]}, 404, "unknown_unit"),
        ({**ACTION, "type": "raid"}, 400, "bad_action"),
        ({**ACTION, "area": {"type": "polygon", "points": [[1, 2]]}}, 400, "bad_area"),
        ({**ACTION, "area": {"type": "circle", "lat": 95, "lon": 0, "radius_m": 5}}, 400, "bad_area"),
        ({**ACTION, "title": ""}, 400, "bad_action"),
        ({**ACTION, "colour": "red"}, 400, "bad_action"),
    ]
    for payload, code, err in bad:
        status, body = await api(http, "POST", base, op, payload)
        assert (status, body["error"]["code"]) == (code, err), body

    status, body = await api(http, "PATCH", f"{base}/{aid}", op, {"title": "查封 车辆 两台"})
    assert status == 200 and body["title"] == "查封 车辆 两台" and body["case_number"] == action["case_number"]
    status, body = await api(http, "POST", f"{base}/{aid}/end", op)
    assert status == 409 and body["error"]["code"] == "bad_transition"
    status, body = await api(http, "POST", f"{base}/{aid}/start", op)
    assert status == 200 and body["state"] == "running" and body["started_at"]

    # A unit belongs to one running action at a time.
    status, other = await api(http, "POST", base, op, {**ACTION, "case_number": "（2026）冀0916执124号"})
    status, body = await api(http, "POST", f"{base}/{other['id']}/start", op)
    assert status == 409 and body["error"]["code"] == "unit_busy"

    status, units = await api(http, "GET", f"{live.url}/api/units", op)
    assert {u["id"]: u["case_number"] for u in units["units"]} == {
        "bc-01": action["case_number"], "veh-01": action["case_number"]}

    status, body = await api(http, "POST", f"{base}/{aid}/end", op)
    assert status == 200 and body["state"] == "ended"
    status, body = await api(http, "PATCH", f"{base}/{aid}", op, {"title": "x"})
    assert status == 409 and body["error"]["code"] == "action_ended"
    status, body = await api(http, "GET", f"{base}/nope", op)
    assert status == 404 and body["error"]["code"] == "unknown_action"

    status, trail = await api(http, "GET", f"{live.url}/api/audit?subject={aid}", aud)
    # (The seizure's rule breaks are in its trail too, as procedure.*: tests/dispatch_server/test_compliance.py.)
    assert [e["verb"] for e in reversed(trail["entries"]) if e["verb"].startswith("action.")] == [
        "action.created", "action.updated", "action.started", "action.ended"]


class CountingActions:
    """The one method RunningActions uses, counting calls; ``gate`` holds a read until set."""

    def __init__(self) -> None:
        self.running: list[Any] = []
        self.reads = 0
        self.gate: asyncio.Event | None = None
        self.reading = asyncio.Event()  # set when a read has started

    async def list(self, state: str | None = None) -> list[Any]:
        assert state == "running"
        self.reads += 1
        self.reading.set()
        if self.gate is not None:
            await self.gate.wait()
        return list(self.running)


def action(action_id: str, *units: str) -> Any:
    return SimpleNamespace(id=action_id, case_number=f"(2026)京0105执{action_id}号", units=list(units))


async def test_running_actions_answer_from_memory_and_read_again_when_told_or_old() -> None:
    store, now = CountingActions(), [100.0]
    running = RunningActions(store, ttl_s=1.0, clock=lambda: now[0])  # type: ignore[arg-type]
    store.running = [action("1", "bc-01")]
    first = await asyncio.gather(*(running() for _ in range(50)))  # concurrent first calls: one read
    assert store.reads == 1 and all(m == {"bc-01": ("1", "(2026)京0105执1号")} for m in first)
    assert await running() is first[0] and store.reads == 1  # from memory

    store.running = [action("1", "bc-01"), action("2", "bc-02")]
    running.invalidate()  # this node changed an action: the next caller waits for a fresh read
    assert set(await running()) == {"bc-01", "bc-02"} and store.reads == 2

    store.running = []
    now[0] += 1.5  # older than ttl: the caller gets the map as it is, a background read refreshes it
    store.gate = asyncio.Event()
    store.reading.clear()
    assert set(await running()) == {"bc-01", "bc-02"}
    await asyncio.wait_for(store.reading.wait(), 5)  # the refresh has started
    assert set(await running()) == {"bc-01", "bc-02"} and store.reads == 3  # one refresh in flight
    store.gate.set()
    await asyncio.wait_for(asyncio.shield(running._refresh), 5)  # type: ignore[arg-type]
    assert await running() == {} and store.reads == 3
    await running.close()


async def test_a_failed_refresh_keeps_the_old_map_and_close_cancels_a_refresh() -> None:
    store, now = CountingActions(), [0.0]
    running = RunningActions(store, ttl_s=1.0, clock=lambda: now[0])  # type: ignore[arg-type]
    store.running = [action("1", "bc-01")]
    assert set(await running()) == {"bc-01"}

    async def broken(state: str | None = None) -> list[Any]:
        raise RuntimeError("store unavailable")

    store.list = broken  # type: ignore[method-assign]
    now[0] += 2
    assert set(await running()) == {"bc-01"}
    refresh = running._refresh
    assert refresh is not None
    await asyncio.wait_for(asyncio.gather(refresh, return_exceptions=True), 5)  # it failed
    assert set(await running()) == {"bc-01"}  # still the last good map
    running.invalidate()
    with pytest.raises(RuntimeError, match="store unavailable"):
        await running()  # an exact read was asked for: its failure is the caller's

    hold = CountingActions()
    hold.gate = asyncio.Event()
    slow = RunningActions(hold, ttl_s=1.0, clock=lambda: now[0])  # type: ignore[arg-type]
    hold.gate.set()
    await slow()
    hold.gate.clear()
    now[0] += 5
    await slow()  # starts a background refresh that blocks on the gate
    await slow.close()  # cancelled, not left behind
    assert slow._refresh is None

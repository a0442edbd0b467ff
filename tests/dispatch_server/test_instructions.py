"""Instructions: the outbox protocol, states with timestamps, targets, and every bad request."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.conftest import LiveServer
from tests.dispatch_server.test_actions import ACTION, api
from tests.support.unit_client import Console, RawUnit

pytestmark = pytest.mark.both_engines  # the outbox, actions, alerts... on SQLite and on PostgreSQL


async def test_instruction_flows_queued_delivered_acknowledged_done(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    # The unit is offline: queued, not an error.
    ids = []
    for n in range(3):
        status, body = await api(http, "POST", f"{live.url}/api/instructions", op,
                                 {"unit": "bc-01", "type": "text", "text": f"第{n}条 指令", "ttl_s": 60})
        assert status == 201 and body["state"] == "queued", body
        ids.append(body["id"])
    update = await console.next("instruction_update", lambda d: d["id"] == ids[0])
    assert update["state"] == "queued"

    unit = await RawUnit(live.url, "bc-01", token).connect()
    got = await unit.call("sync", {"after_seq": 0})
    assert [i["id"] for i in got["instructions"]] == ids
    assert [i["seq"] for i in got["instructions"]] == [1, 2, 3]
    assert got["instructions"][0]["payload"] == {"text": "第0条 指令"}
    ack = await unit.call("received", {"ids": ids})
    assert ack == {"ok": True, "delivered": ids, "expired": []}
    assert (await unit.call("received", {"ids": ids}))["delivered"] == ids  # idempotent after a client restart
    assert [i["id"] for i in (await unit.call("sync", {"after_seq": 2}))["instructions"]] == [ids[2]]

    assert (await unit.call("instruction_state", {"id": ids[0], "state": "acknowledged"}))["ok"]
    assert (await unit.call("instruction_state", {"id": ids[0], "state": "done"}))["ok"]
    assert (await unit.call("instruction_state", {"id": ids[1], "state": "refused", "reason": "路不通"}))["ok"]
    await console.next("instruction_update", lambda d: d["id"] == ids[0] and d["state"] == "done")

    status, first = await api(http, "GET", f"{live.url}/api/instructions/{ids[0]}", op)
    assert first["state"] == "done"
    for key in ("created_at", "delivered_at", "acknowledged_at", "done_at"):
        assert first[key], key
    status, second = await api(http, "GET", f"{live.url}/api/instructions/{ids[1]}", op)
    assert second["state"] == "refused" and second["reason"] == "路不通"
    assert (await unit.call("sync", {"after_seq": 0}))["instructions"] == [
        i for i in (await unit.call("sync", {"after_seq": 2}))["instructions"]]  # only the delivered, unfinished one

    status, trail = await api(http, "GET", f"{live.url}/api/audit?subject={ids[0]}", op)
    assert status == 403  # operators do not read the audit trail
    live.add_user("sup", "supervisor")
    status, trail = await api(http, "GET", f"{live.url}/api/audit?subject={ids[0]}", await live.login("sup"))
    assert [e["verb"] for e in reversed(trail["entries"])] == [
        "instruction.queued", "instruction.delivered", "instruction.acknowledged", "instruction.done"]
    await unit.close()
    await console.close()


async def test_bad_instruction_requests_are_refused(live: LiveServer, http: aiohttp.ClientSession) -> None:
    live.add_unit("bc-01")
    live.add_user("op", "operator")
    live.add_user("aud", "auditor")
    op = await live.login("op")
    url = f"{live.url}/api/instructions"
    cases: list[tuple[Any, int, str]] = [
        ({"unit": "ghost", "type": "text", "text": "x"}, 404, "unknown_unit"),
        ({"action": "act-nope", "type": "text", "text": "x"}, 404, "unknown_action"),
        ({"unit": "bc-01", "type": "text", "text": "x", "ttl_s": 0}, 400, "bad_ttl"),
        ({"unit": "bc-01", "type": "text", "text": "x", "ttl_s": -5}, 400, "bad_ttl"),
        ({"unit": "bc-01", "type": "text", "text": "x", "expires_at": "2020-01-01T00:00:00Z"}, 400, "bad_ttl"),
        ({"unit": "bc-01", "type": "text", "text": "字" * 2001}, 400, "too_long"),
        ({"unit": "bc-01", "type": "text", "text": "   "}, 400, "bad_instruction"),
        ({"type": "text", "text": "x"}, 400, "bad_target"),
        ({"unit": "bc-01", "action": "a", "type": "text", "text": "x"}, 400, "bad_target"),
        ({"unit": "bc-01", "type": "launch"}, 400, "bad_instruction"),
        ({"unit": "bc-01", "type": "goto", "lat": 100, "lon": 1}, 400, "bad_instruction"),
        ({"unit": "bc-01", "type": "text", "text": "x", "priority": "max"}, 400, "bad_instruction"),
        ({"all": True, "type": "text", "text": "x"}, 409, "no_online_units"),
        ("not an object", 400, "bad_instruction"),
    ]
    for body, status, code in cases:
        got_status, got = await api(http, "POST", url, op, body)
        assert (got_status, got["error"]["code"]) == (status, code), (body, got)
    status, got = await api(http, "POST", url, await live.login("aud"), {"unit": "bc-01", "type": "snapshot"})
    assert status == 403
    status, got = await api(http, "GET", f"{url}/ins-nope", op)
    assert status == 404 and got["error"]["code"] == "unknown_instruction"


async def test_units_cannot_touch_instructions_they_never_got(live: LiveServer, http: aiohttp.ClientSession) -> None:
    t1, t2 = live.add_unit("bc-01"), live.add_unit("bc-02")
    live.add_user("op", "operator")
    op = await live.login("op")
    _, body = await api(http, "POST", f"{live.url}/api/instructions", op, {"unit": "bc-01", "type": "snapshot"})
    iid = body["id"]
    u1, u2 = await RawUnit(live.url, "bc-01", t1).connect(), await RawUnit(live.url, "bc-02", t2).connect()
    assert (await u2.call("received", {"ids": [iid]}))["error"]["code"] == "unknown_instruction"
    stranger = await u2.call("instruction_state", {"id": iid, "state": "acknowledged"})
    assert stranger["error"]["code"] == "unknown_instruction"
    assert (await u2.call("sync", {"after_seq": 0}))["instructions"] == []
    # Acknowledging before receipt: the unit never got it.
    early = await u1.call("instruction_state", {"id": iid, "state": "acknowledged"})
    assert early["error"]["code"] == "not_delivered"
    await u1.call("received", {"ids": [iid]})
    assert (await u1.call("instruction_state", {"id": iid, "state": "acknowledged"}))["ok"]
    _, before = await api(http, "GET", f"{live.url}/api/instructions/{iid}", op)
    replay = await u1.call("instruction_state", {"id": iid, "state": "acknowledged"})
    assert replay["ok"] is False and replay["error"]["code"] == "already_in_state"
    assert (await u1.call("instruction_state", {"id": iid, "state": "done"}))["ok"]
    backwards = await u1.call("instruction_state", {"id": iid, "state": "acknowledged"})
    assert backwards["error"]["code"] == "bad_transition"
    bad = await u1.call("instruction_state", {"id": iid, "state": "exploded"})
    assert bad["error"]["code"] == "bad_state"
    for junk in ({"after_seq": -1}, {"after_seq": "x"}, "zzz"):
        assert (await u1.call("sync", junk))["error"]["code"] == "bad_message"
    assert (await u1.call("received", {"ids": []}))["error"]["code"] == "bad_message"
    _, after = await api(http, "GET", f"{live.url}/api/instructions/{iid}", op)
    assert after["acknowledged_at"] == before["acknowledged_at"] and after["state"] == "done"
    await u1.close()
    await u2.close()


async def test_team_and_all_online_targets(live: LiveServer, http: aiohttp.ClientSession) -> None:
    tokens = {u: live.add_unit(u) for u in ("bc-01", "veh-01", "bc-09")}
    live.add_user("op", "operator")
    op = await live.login("op")
    _, action = await api(http, "POST", f"{live.url}/api/actions", op, ACTION)
    await api(http, "POST", f"{live.url}/api/actions/{action['id']}/start", op)
    status, body = await api(http, "POST", f"{live.url}/api/instructions", op,
                             {"action": action["id"], "type": "goto", "lat": 38.05, "lon": 114.5, "note": "北门集合"})
    assert status == 201 and sorted(body["units"]) == ["bc-01", "veh-01"]
    _, ins = await api(http, "GET", f"{live.url}/api/instructions/{body['ids'][0]}", op)
    assert ins["action_id"] == action["id"] and ins["case_number"] == "（2026）冀0916执123号"
    online = await RawUnit(live.url, "bc-09", tokens["bc-09"]).connect()
    pending = asyncio.ensure_future(online.pending.get())
    status, body = await api(http, "POST", f"{live.url}/api/instructions", op,
                             {"all": True, "type": "text", "text": "收队"})
    assert status == 201 and body["units"] == ["bc-09"]
    assert (await asyncio.wait_for(pending, 5))["max_seq"] == 1
    await online.close()


async def test_receipts_of_many_units_at_once_are_each_answered_and_stored(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    """Receipts arriving together are stored together: each unit still gets its own answer, a
    receipt naming another unit's instruction is refused alone, a repeated one changes nothing."""
    names = [f"bc-{i:02d}" for i in range(8)]
    tokens = {u: live.add_unit(u) for u in names}
    live.add_user("op", "operator")
    live.add_user("sup", "supervisor")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    units = [await RawUnit(live.url, u, tokens[u]).connect() for u in names]
    status, body = await api(http, "POST", f"{live.url}/api/instructions", op, {"all": True, "type": "text",
                                                                                 "text": "全体注意"})
    assert status == 201 and sorted(body["units"]) == names
    got = {u.unit_id: (await asyncio.wait_for(u.pending.get(), 5))["instructions"][0]["id"] for u in units}
    assert sorted(got.values()) == sorted(body["ids"])
    calls = [u.call("received", {"ids": [got[u.unit_id]]}) for u in units]
    calls.append(units[0].call("received", {"ids": [got[names[1]]]}))  # another unit's instruction
    calls.append(units[2].call("received", {"ids": [got[names[2]]]}))  # the same receipt twice
    answers = await asyncio.gather(*calls)
    for unit, answer in zip(units, answers, strict=False):
        assert answer == {"ok": True, "delivered": [got[unit.unit_id]], "expired": []}
    assert answers[-2]["error"]["code"] == "unknown_instruction"
    assert answers[-1] == {"ok": True, "delivered": [got[names[2]]], "expired": []}
    delivered: set[str] = set()
    while len(delivered) < len(names):
        update = await console.next("instruction_update", lambda d: d["state"] == "delivered")
        assert update["delivered_at"] and update["id"] not in delivered
        delivered.add(update["id"])
    sup = await live.login("sup")
    for unit_id, iid in got.items():
        _, ins = await api(http, "GET", f"{live.url}/api/instructions/{iid}", op)
        assert ins["state"] == "delivered" and ins["unit_id"] == unit_id and ins["delivered_at"]
        _, trail = await api(http, "GET", f"{live.url}/api/audit?subject={iid}", sup)
        assert [(e["verb"], e["actor"]) for e in reversed(trail["entries"])] == [
            ("instruction.queued", "op"), ("instruction.delivered", f"unit:{unit_id}")]
        assert trail["entries"][0]["detail"]["seq"] == 1
    for unit in units:
        await unit.close()
    await console.close()


async def test_queued_instruction_expires_after_its_ttl_and_is_never_delivered(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    """5 s TTL to a unit that stays offline for 10 s: never delivered, shows expired."""
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    _, body = await api(http, "POST", f"{live.url}/api/instructions", op,
                        {"unit": "bc-01", "type": "text", "text": "五秒内有效", "ttl_s": 5})
    expired = await console.next("instruction_update", lambda d: d["id"] == body["id"] and d["state"] == "expired",
                                 timeout=10)
    assert expired["delivered_at"] is None and expired["expired_at"]
    try:
        await console.next("instruction_update", lambda d: False, timeout=4.5)  # the unit stays offline for 10 s
    except asyncio.TimeoutError:
        pass
    unit = await RawUnit(live.url, "bc-01", token).connect()
    assert (await unit.call("sync", {"after_seq": 0}))["instructions"] == []
    late = await unit.call("received", {"ids": [body["id"]]})
    assert late == {"ok": True, "delivered": [], "expired": [body["id"]]}
    _, final = await api(http, "GET", f"{live.url}/api/instructions/{body['id']}", op)
    assert final["state"] == "expired" and final["delivered_at"] is None
    await unit.close()
    await console.close()

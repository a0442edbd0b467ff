"""Cancelling a queued instruction, the answer that says which targets are online, reason codes,
and alerts that carry a code and parameters."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.conftest import LiveServer
from tests.dispatch_server.test_actions import api
from tests.support.unit_client import Console, RawUnit

pytestmark = pytest.mark.both_engines  # the outbox, actions, alerts... on SQLite and on PostgreSQL


async def test_a_cancelled_instruction_is_never_delivered(live: LiveServer, http: aiohttp.ClientSession) -> None:
    token = live.add_unit("bc-01")
    live.add_unit("bc-02")
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    unit = await RawUnit(live.url, "bc-01", token).connect()
    status, body = await api(http, "POST", f"{live.url}/api/instructions", op,
                             {"unit": "bc-02", "type": "text", "text": "离线单位", "ttl_s": 60})
    assert status == 201 and body["online"] == []  # queued for an offline unit: the console says so
    status, body = await api(http, "POST", f"{live.url}/api/instructions", op,
                             {"unit": "bc-01", "type": "text", "text": "撤销我", "ttl_s": 60})
    assert status == 201 and body["online"] == ["bc-01"]
    iid = body["id"]

    # The unit heard of it (instructions_pending) but has not said `received`: cancel wins.
    status, cancelled = await api(http, "POST", f"{live.url}/api/instructions/{iid}/cancel", op)
    assert status == 200 and cancelled["state"] == "cancelled" and cancelled["reason"] == "cancelled"
    assert cancelled["cancelled_at"]
    await console.next("instruction_update", lambda d: d["id"] == iid and d["state"] == "cancelled")
    assert [i["id"] for i in (await unit.call("sync", {"after_seq": 0}))["instructions"]] == []
    ack = await unit.call("received", {"ids": [iid]})
    assert ack["delivered"] == [] and ack["expired"] == [iid]
    status, body = await api(http, "POST", f"{live.url}/api/instructions/{iid}/cancel", op)
    assert status == 409 and body["error"]["code"] == "not_cancellable"
    state = await unit.call("instruction_state", {"id": iid, "state": "acknowledged"})
    assert state["ok"] is False and state["error"]["code"] == "not_delivered"

    # Delivered first: the cancel is refused.
    status, body = await api(http, "POST", f"{live.url}/api/instructions", op,
                             {"unit": "bc-01", "type": "text", "text": "已送达", "ttl_s": 60})
    assert (await unit.call("received", {"ids": [body["id"]]}))["delivered"] == [body["id"]]
    status, refused = await api(http, "POST", f"{live.url}/api/instructions/{body['id']}/cancel", op)
    assert status == 409 and refused["error"]["code"] == "not_cancellable"

    live.add_user("aud", "auditor")
    status, body = await api(http, "POST", f"{live.url}/api/instructions/{iid}/cancel", await live.login("aud"))
    assert status == 403
    sup = "sup"
    live.add_user(sup, "supervisor")
    status, trail = await api(http, "GET", f"{live.url}/api/audit?subject={iid}", await live.login(sup))
    assert [e["verb"] for e in reversed(trail["entries"])] == ["instruction.queued", "instruction.cancelled"]
    assert trail["entries"][0]["actor"] == "op"
    await unit.close()
    await console.close()


async def test_cancel_and_received_at_the_same_moment_have_one_winner(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    op = await live.login("op")
    unit = await RawUnit(live.url, "bc-01", token).connect()
    for n in range(8):
        status, body = await api(http, "POST", f"{live.url}/api/instructions", op,
                                 {"unit": "bc-01", "type": "text", "text": f"竞争 {n}", "ttl_s": 60})
        iid = body["id"]
        cancel, ack = await asyncio.gather(api(http, "POST", f"{live.url}/api/instructions/{iid}/cancel", op),
                                           unit.call("received", {"ids": [iid]}))
        status, final = await api(http, "GET", f"{live.url}/api/instructions/{iid}", op)
        if cancel[0] == 200:
            assert ack["delivered"] == [] and final["state"] == "cancelled"
        else:
            assert cancel[1]["error"]["code"] == "not_cancellable"
            assert ack["delivered"] == [iid] and final["state"] == "delivered"
    await unit.close()


async def test_expiry_reason_is_a_code_and_alerts_carry_code_and_params(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    status, body = await api(http, "POST", f"{live.url}/api/instructions", op,
                             {"unit": "bc-01", "type": "text", "text": "很快过期", "ttl_s": 0.2})
    update = await console.next("instruction_update", lambda d: d["id"] == body["id"] and d["state"] == "expired")
    assert update["reason"] == "ttl_expired"
    unit = await RawUnit(live.url, "bc-01", token).connect()
    await unit.call("sos", {"note": "需要支援"})
    alert = await console.next("alert", lambda a: a["kind"] == "sos")
    assert alert["code"] == "sos" and alert["params"]["unit_id"] == "bc-01"
    assert alert["params"]["note"] == "需要支援" and alert["params"]["position_known"] is False
    assert "SOS from unit bc-01" in alert["message"]  # the English sentence stays for logs and API clients
    await unit.close()
    await console.close()

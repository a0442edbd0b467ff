"""Alerts: SOS, escalation, units dropping out of a running action, overdue acknowledgements."""

from __future__ import annotations

import time

import aiohttp
import pytest

from tests.dispatch_server.test_actions import ACTION, api
from tests.support.unit_client import Console, RawUnit

pytestmark = pytest.mark.both_engines  # the outbox, actions, alerts... on SQLite and on PostgreSQL


async def test_sos_reaches_operators_with_position_and_escalates(
    make_live: object, http: aiohttp.ClientSession
) -> None:
    live = await make_live(alerts={"escalate_after_s": 1.0, "sweep_interval_s": 0.1})  # type: ignore[operator]
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    unit = await RawUnit(live.url, "bc-01", token).connect()
    assert (await unit.call("position", {"lat": 38.0431, "lon": 114.5149, "ts": time.time()}))["ok"]

    ack = await unit.call("sos", {"note": "被围堵"})
    assert ack["ok"], ack
    alert = await console.next("alert", lambda a: a["kind"] == "sos")
    assert alert["id"] == ack["alert_id"] and alert["unit_id"] == "bc-01"
    assert alert["position"]["lat"] == 38.0431 and "被围堵" in alert["message"]
    escalated = await console.next("alert_update", lambda a: a["id"] == alert["id"] and a["escalated"], timeout=5)
    assert escalated["state"] == "open"

    status, body = await api(http, "POST", f"{live.url}/api/alerts/{alert['id']}/ack", op)
    assert status == 200 and body["state"] == "acknowledged" and body["acknowledged_by"] == "op"
    status, body = await api(http, "POST", f"{live.url}/api/alerts/{alert['id']}/ack", op)
    assert status == 409 and body["error"]["code"] == "already_acknowledged"
    status, body = await api(http, "POST", f"{live.url}/api/alerts/al-nope/ack", op)
    assert status == 404

    # The field page has only HTTP: SOS with the unit token, position in the body.
    async with http.post(f"{live.url}/api/units/bc-01/sos", json={"lat": 38.1, "lon": 114.6},
                         headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 201
    assert (await console.next("alert", lambda a: a["kind"] == "sos"))["position"]["lon"] == 114.6
    async with http.post(f"{live.url}/api/units/bc-01/sos", json={"lat": 138},
                         headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 400
    async with http.post(f"{live.url}/api/units/bc-01/sos", json={}, headers={"Authorization": "Bearer forged"}) as r:
        assert r.status == 401
    assert (await unit.call("sos", {"note": 5}))["error"]["code"] == "bad_message"
    await unit.close()
    await console.close()


async def test_unit_leaving_a_running_action_and_overdue_ack_raise_alerts(
    make_live: object, http: aiohttp.ClientSession
) -> None:
    live = await make_live(alerts={"sweep_interval_s": 0.1})  # type: ignore[operator]
    token = live.add_unit("bc-01")
    live.add_unit("veh-01", "vehicle")
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Console(live.url, op).connect()
    _, action = await api(http, "POST", f"{live.url}/api/actions", op, ACTION)
    await api(http, "POST", f"{live.url}/api/actions/{action['id']}/start", op)

    unit = await RawUnit(live.url, "bc-01", token).connect()
    _, body = await api(http, "POST", f"{live.url}/api/instructions", op,
                        {"unit": "bc-01", "type": "callback", "ack_deadline_s": 1})
    got = await unit.call("sync", {"after_seq": 0})
    await unit.call("received", {"ids": [i["id"] for i in got["instructions"]]})
    overdue = await console.next("alert", lambda a: a["kind"] == "ack_overdue", timeout=5)
    assert overdue["instruction_id"] == body["id"] and overdue["action_id"] == action["id"]

    await unit.close()
    offline = await console.next("alert", lambda a: a["kind"] == "unit_offline", timeout=5)
    assert offline["unit_id"] == "bc-01" and offline["case_number"] == action["case_number"]
    status, listed = await api(http, "GET", f"{live.url}/api/alerts?state=open", op)
    # The seizure's rules of procedure raise procedure_* alerts of their own (test_compliance.py).
    assert {a["kind"] for a in listed["alerts"] if not a["kind"].startswith("procedure_")} == {"ack_overdue",
                                                                                             "unit_offline"}
    await console.close()

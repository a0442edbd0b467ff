"""Administration through the API: units (register, rotate, disable, enable) and people (create,
reset password, change role, disable, enable), each audited; ``GET /api/me`` sends permissions."""

from __future__ import annotations

import csv
import io

import aiohttp
import pytest
import socketio

from dispatch_server.auth import PERMISSIONS
from tests.conftest import OPERATOR_PASSWORD, LiveServer
from tests.dispatch_server.test_actions import api
from tests.support.secrets import remember
from tests.support.unit_client import RawUnit

pytestmark = pytest.mark.both_engines  # the outbox, actions, alerts... on SQLite and on PostgreSQL


async def test_me_lists_the_permissions_of_the_role(live: LiveServer, http: aiohttp.ClientSession) -> None:
    live.add_user("op", "operator")
    status, me = await api(http, "GET", f"{live.url}/api/me", await live.login("op"))
    assert status == 200 and me["role"] == "operator"
    assert me["permissions"] == sorted(p for p, roles in PERMISSIONS.items() if "operator" in roles)
    assert "requests.read" not in me["permissions"] and "accounts.admin" not in me["permissions"]
    status, me = await api(http, "GET", f"{live.url}/api/me", await live.admin())
    assert "accounts.admin" in me["permissions"]
    status, config = await api(http, "GET", f"{live.url}/api/console-config", await live.admin())
    assert config["time_zone"] == "Asia/Shanghai"


async def test_admin_registers_rotates_disables_and_enables_a_unit(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    admin = await live.admin()
    status, unit = await api(http, "POST", f"{live.url}/api/units", admin,
                             {"id": "veh-07", "kind": "vehicle", "name": "车载7号"})
    assert status == 201, unit
    token = remember(unit.pop("token"))
    assert unit["id"] == "veh-07" and unit["kind"] == "vehicle" and unit["name"] == "车载7号" and not unit["disabled"]
    status, body = await api(http, "POST", f"{live.url}/api/units", admin, {"id": "veh-07", "kind": "vehicle"})
    assert status == 409 and body["error"]["code"] == "unit_exists"
    status, body = await api(http, "POST", f"{live.url}/api/units", admin, {"id": "veh-08", "kind": "drone"})
    assert status == 400 and body["error"]["code"] == "bad_kind"
    status, roster = await api(http, "GET", f"{live.url}/api/units", admin)
    assert {"id": "veh-07", "name": "车载7号", "disabled": False}.items() <= next(
        u for u in roster["units"] if u["id"] == "veh-07").items()

    # The unit connects with its token; a rotation closes that link at once and the old token fails.
    unit_link = await RawUnit(live.url, "veh-07", token).connect()
    status, rotated = await api(http, "POST", f"{live.url}/api/units/veh-07/rotate", admin)
    assert status == 200
    new_token = remember(rotated["token"])
    assert new_token != token
    await unit_link.until_disconnected()
    try:
        await RawUnit(live.url, "veh-07", token).connect()
        raise AssertionError("the old token still works")
    except socketio.exceptions.ConnectionError:
        pass

    # Disabled: the link with the new token closes and reconnecting is refused; enabled: it works again.
    unit_link = await RawUnit(live.url, "veh-07", new_token).connect()
    status, disabled = await api(http, "POST", f"{live.url}/api/units/veh-07/disable", admin)
    assert status == 200 and disabled["disabled"] is True
    await unit_link.until_disconnected()
    status, body = await api(http, "POST", f"{live.url}/api/units/veh-07/enable", admin)
    assert status == 200 and body["disabled"] is False
    unit_link = await RawUnit(live.url, "veh-07", new_token).connect()
    await unit_link.close()

    status, trail = await api(http, "GET", f"{live.url}/api/audit?unit=veh-07&actor=root", admin)
    assert [e["verb"] for e in reversed(trail["entries"])] == [
        "unit.registered", "unit.token_rotated", "unit.disabled", "unit.enabled"]
    assert all(token not in str(e) and new_token not in str(e) for e in trail["entries"])


async def test_admin_manages_people_and_the_changes_take_effect(live: LiveServer, http: aiohttp.ClientSession) -> None:
    admin = await live.admin()
    remember("new-password-2")
    remember("first-password-1")
    status, user = await api(http, "POST", f"{live.url}/api/users", admin,
                             {"username": "zhang.san", "role": "operator", "password": "first-password-1"})
    assert status == 201 and user == {**user, "username": "zhang.san", "role": "operator", "disabled": False}
    status, body = await api(http, "POST", f"{live.url}/api/users", admin,
                             {"username": "li", "role": "operator", "password": "short"})
    assert status == 400 and body["error"]["code"] == "bad_password"
    status, body = await api(http, "POST", f"{live.url}/api/users", admin,
                             {"username": "li", "role": "boss", "password": "long-enough-1"})
    assert status == 400 and body["error"]["code"] == "bad_role"
    session = await live.login("zhang.san", "first-password-1")

    status, _ = await api(http, "POST", f"{live.url}/api/users/zhang.san/role", admin, {"role": "supervisor"})
    assert status == 200
    status, me = await api(http, "GET", f"{live.url}/api/me", session)
    assert me["role"] == "supervisor" and "requests.decide" in me["permissions"]

    status, _ = await api(http, "POST", f"{live.url}/api/users/zhang.san/password", admin,
                          {"password": "new-password-2"})
    assert status == 200
    status, body = await api(http, "GET", f"{live.url}/api/me", session)
    assert status == 401  # the reset ended the session
    session = await live.login("zhang.san", "new-password-2")

    status, listed = await api(http, "GET", f"{live.url}/api/users", admin)
    assert next(u for u in listed["users"] if u["username"] == "zhang.san")["sessions"] == 1
    status, _ = await api(http, "POST", f"{live.url}/api/users/zhang.san/disable", admin)
    assert status == 200
    assert (await api(http, "GET", f"{live.url}/api/me", session))[0] == 401
    async with http.post(f"{live.url}/api/login", json={"username": "zhang.san", "password": "new-password-2"}) as r:
        assert r.status == 401
    status, _ = await api(http, "POST", f"{live.url}/api/users/zhang.san/enable", admin)
    assert status == 200
    await live.login("zhang.san", "new-password-2")

    status, body = await api(http, "POST", f"{live.url}/api/users/root/disable", admin)
    assert status == 409 and body["error"]["code"] == "own_account"
    # A supervisor equips units (register, rotate, disable) but does not manage people.
    live.add_user("sup", "supervisor")
    sup = await live.login("sup", OPERATOR_PASSWORD)
    status, unit = await api(http, "POST", f"{live.url}/api/units", sup, {"id": "bc-sup-01", "kind": "phone"})
    assert status == 201 and unit["token"], unit
    status, body = await api(http, "POST", f"{live.url}/api/units/bc-sup-01/disable", sup, {})
    assert status == 200 and body["disabled"] is True, body
    for method, path in (("GET", "/api/users"), ("POST", "/api/users/zhang.san/disable")):
        status, body = await api(http, method, f"{live.url}{path}", sup, {} if method == "POST" else None)
        assert status == 403 and body["error"]["code"] == "forbidden", path
    live.add_user("op", "operator")
    op = await live.login("op", OPERATOR_PASSWORD)
    for method, path in (("GET", "/api/users"), ("POST", "/api/users/zhang.san/disable"),
                         ("POST", "/api/units/x/rotate")):
        status, body = await api(http, method, f"{live.url}{path}", op, {} if method == "POST" else None)
        assert status == 403 and body["error"]["code"] == "forbidden", path

    status, trail = await api(http, "GET", f"{live.url}/api/audit?action=user&actor=root", admin)
    assert [e["verb"] for e in reversed(trail["entries"])] == [
        "user.created", "user.role_changed", "user.password_reset", "user.disabled", "user.enabled"]
    changed = next(e for e in trail["entries"] if e["verb"] == "user.role_changed")
    assert changed["detail"] == {"from": "operator", "to": "supervisor"} and changed["subject"] == "user:zhang.san"


async def test_audit_filters_and_csv(live: LiveServer, http: aiohttp.ClientSession) -> None:
    admin = await live.admin()
    live.add_unit("bc-01")
    live.add_unit("bc-02")
    for unit in ("bc-01", "bc-02"):
        status, _ = await api(http, "POST", f"{live.url}/api/instructions", admin,
                              {"unit": unit, "type": "text", "text": "前往 3 号门", "ttl_s": 60})
        assert status == 201
    status, trail = await api(http, "GET", f"{live.url}/api/audit?unit=bc-02", admin)
    assert [e["verb"] for e in trail["entries"]] == ["instruction.queued"]
    assert trail["entries"][0]["detail"]["unit_id"] == "bc-02" and trail["entries"][0]["at"].endswith("Z")
    status, trail = await api(http, "GET", f"{live.url}/api/audit?from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z",
                              admin)
    assert trail["entries"] == []
    status, body = await api(http, "GET", f"{live.url}/api/audit?from=yesterday", admin)
    assert status == 400 and body["error"]["code"] == "bad_query"
    async with http.get(f"{live.url}/api/audit?action=instruction&format=csv",
                        headers={"Authorization": f"Bearer {admin}"}) as r:
        assert r.status == 200 and r.content_type == "text/csv"
        text = (await r.read()).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["verb"] for r in rows} == {"instruction.queued"} and len(rows) == 2
    assert rows[0]["time"][:4].isdigit() and " " in rows[0]["time"] and "前往" not in text  # detail: no payload

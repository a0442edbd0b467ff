"""Issue #14's findings, each reproduced against the real server: who receives which push, party
requests of another party, the Socket.IO origin check, login floods, anonymous ledger floods,
input that reached a 500, headers, oracles and small leaks."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
import socketio

from dispatch_server.appkeys import ARCHIVE, DENIALS, LIVE, REQUESTS, SIO
from dispatch_server.auth import PERMISSIONS, ROLES
from dispatch_server.sio.push import EVENT_PERMISSION, Push
from tests.conftest import LiveServer
from tests.dispatch_server.test_actions import ACTION, api
from tests.recordings.archive_support import entries
from tests.support.peers import make_publisher, make_viewer, whip_publish
from tests.support.waits import until

CASE = "（2026）冀0916执123号"


class Listener:
    """A console of one role counting every push it gets, by event name."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.got: dict[str, int] = {}

    async def connect(self, url: str, token: str) -> Listener:
        async def count(event: str, *args: Any) -> None:
            self.got[event] = self.got.get(event, 0) + 1

        self.sio.on("*", count, namespace="/console")
        await self.sio.connect(url, namespaces=["/console"], auth={"token": token}, transports=["websocket"])
        return self


# -- 4. events only to those who may read them ------------------------------------------------
async def test_every_push_reaches_exactly_the_roles_that_may_read_it(live: LiveServer) -> None:
    listeners = {}
    for role in ROLES:
        live.add_user(f"p-{role}", role)
        listeners[role] = await Listener().connect(live.url, await live.login(f"p-{role}"))
    sender = Push(live.app[SIO])  # a second Push on the server's Socket.IO: the rooms are the server's
    for event in EVENT_PERMISSION:
        await sender.operators(event, {"probe": event})
    marker = "unit_status"  # the last event every role may read: when it arrives, the others have
    await sender.operators(marker, {"probe": "end"})
    await until(lambda: all(listener.got.get(marker, 0) >= 2 for listener in listeners.values()), 20,
                "every console got the last push")
    for role, listener in listeners.items():
        for event, permission in EVENT_PERMISSION.items():
            allowed = role in PERMISSIONS[permission]
            assert (listener.got.get(event, 0) > 0) == allowed, f"{role} {'missed' if allowed else 'got'} {event}"
    with pytest.raises(KeyError):
        await sender.operators("an_event_nobody_decided_who_may_read", {})
    for listener in listeners.values():
        await listener.sio.disconnect()


# -- 5. a party reads and answers only its own requests -----------------------------------------
async def test_another_party_of_the_case_cannot_see_or_answer_a_request(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    live.add_user("op", "operator")
    live.add_user("judge", "supervisor")
    op, judge = await live.login("op"), await live.login("judge")
    live.add_unit("bc-01")
    live.add_unit("veh-01", "vehicle")
    _, action = await api(http, "POST", f"{live.url}/api/actions", op, ACTION)
    tokens = {}
    for name in ("张三", "李四"):
        _, code = await api(http, "POST", f"{live.url}/api/party/codes", judge,
                            {"case_number": CASE, "party_name": name})
        async with http.post(f"{live.url}/api/party/login",
                             json={"case_number": CASE, "code": code["code"], "name": name}) as r:
            tokens[name] = (await r.json())["token"]
    _, mine = await api(http, "POST", f"{live.url}/api/party/requests", tokens["张三"],
                        {"action_id": action["id"], "reason": "请调取录像（个人隐私内容）"})
    await api(http, "POST", f"{live.url}/api/footage-requests/{mine['id']}/decision", judge,
              {"decision": "more_info", "reason": "请说明用途"})
    status, body = await api(http, "POST", f"{live.url}/api/party/requests/{mine['id']}/reply", tokens["李四"],
                             {"message": "我替他回答"})
    assert status == 404 and body["error"]["code"] == "unknown_request"
    _, theirs = await api(http, "GET", f"{live.url}/api/party/requests", tokens["李四"])
    assert theirs["requests"] == []
    doc = await live.app[REQUESTS].get(mine["id"])
    assert doc["state"] == "more_info" and [h["what"] for h in doc["history"]] == ["requested", "more_info"]


# -- 6. a browser page of another origin cannot open the console socket ------------------------
async def test_a_console_socket_from_another_origin_is_refused(live: LiveServer) -> None:
    live.add_user("op", "operator")
    token = await live.login("op")
    evil = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await evil.connect(live.url, namespaces=["/console"], auth={"token": token}, transports=["websocket"],
                           headers={"Origin": "http://evil.example"}, wait_timeout=5)
    same = socketio.AsyncClient(reconnection=False)
    await same.connect(live.url, namespaces=["/console"], auth={"token": token}, transports=["websocket"],
                       headers={"Origin": live.url}, wait_timeout=5)
    await same.disconnect()
    anonymous = socketio.AsyncClient(reconnection=False)  # the "/" namespace takes nobody
    with pytest.raises(socketio.exceptions.ConnectionError):
        await anonymous.connect(live.url, transports=["websocket"], wait_timeout=5)


# -- 7. login floods: throttled, hashed off the database thread --------------------------------
async def test_guessing_a_password_locks_the_guesser_but_not_the_console(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    live.add_user("admin1", "admin", "the-real-password-1")
    live.add_user("op", "operator")
    op = await live.login("op")
    statuses, retry, message = [], "", ""
    for n in range(8):
        async with http.post(f"{live.url}/api/login", json={"username": "admin1", "password": f"guess-{n}"}) as r:
            statuses.append(r.status)
            if r.status == 429:
                retry = r.headers["Retry-After"]
                message = (await r.json())["error"]["message"]
    assert statuses == [401] * 6 + [429, 429], "five guesses free, the sixth locks, then 429"
    assert "try again in" in message and int(retry) >= 1
    # The right password during the lock is refused too: a guesser learns nothing by trying.
    async with http.post(f"{live.url}/api/login", json={"username": "admin1", "password": "the-real-password-1"}) as r:
        assert r.status == 429
    # Meanwhile an operator's console is answered at once.
    start = time.monotonic()
    assert (await api(http, "GET", f"{live.url}/api/me", op))[0] == 200
    assert time.monotonic() - start < 1.0
    _, trail = await api(http, "GET", f"{live.url}/api/audit?subject=admin1", await live.admin())
    assert sum(e["verb"] == "login.failed" for e in trail["entries"]) >= 5


async def test_concurrent_unknown_user_logins_do_not_stall_other_requests(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    live.add_user("op", "operator")
    op = await live.login("op")

    async def guess(n: int) -> int:
        async with http.post(f"{live.url}/api/login", json={"username": f"nobody{n}", "password": "x" * 12}) as r:
            return r.status

    flood = asyncio.gather(*(guess(n) for n in range(60)))
    worst = 0.0
    for _ in range(10):
        start = time.monotonic()
        assert (await api(http, "GET", f"{live.url}/api/me", op))[0] == 200
        worst = max(worst, time.monotonic() - start)
    statuses = await flood
    assert set(statuses) <= {401, 429, 503}
    assert worst < 1.0, f"/api/me took {worst:.2f} s during a login flood (was 6-9 s with hashing on the db thread)"


# -- 8. anonymous denials do not fill the ledger ------------------------------------------------
async def test_a_flood_of_bad_download_links_adds_a_bounded_number_of_ledger_entries(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    before = len(entries(live.settings.archive_dir))
    for n in range(300):
        async with http.get(f"{live.url}/dl/{n:043x}/package") as r:
            assert r.status == 404
    await live.app[DENIALS].flush()
    added = [e for e in entries(live.settings.archive_dir)[before:] if e["type"] == "access_denied"]
    assert len(added) == 2, "one at once, one summary for the rest"
    assert added[1]["data"]["repeated"] == 299
    assert live.app[ARCHIVE].ledger.size < before + 10


# -- 10 and 12. input that reached a 500 -------------------------------------------------------
@pytest.mark.parametrize("body, field", [
    ('{"unit": "bc-01", "type": "text", "text": "x", "ttl_s": NaN}', "ttl_s"),
    ('{"unit": "bc-01", "type": "goto", "lat": Infinity, "lon": 1}', "lat"),
    ('{"unit": "bc-01", "type": "text", "text": "x", "ttl_s": ' + "9" * 400 + "}", "ttl_s"),
    ('{"unit": "bc-01", "type": "text", "text": "x", "expires_at": -1e999}', "expires_at"),
])
async def test_non_finite_and_huge_numbers_are_refused_naming_the_field(
    live: LiveServer, http: aiohttp.ClientSession, body: str, field: str
) -> None:
    live.add_unit("bc-01")
    live.add_user("op", "operator")
    op = await live.login("op")
    async with http.post(f"{live.url}/api/instructions", data=body,
                         headers={"Authorization": f"Bearer {op}", "Content-Type": "application/json"}) as r:
        assert r.status == 400
        error = (await r.json())["error"]
    assert error["code"] == "bad_json" and f"field {field}" in error["message"]
    assert (await api(http, "GET", f"{live.url}/api/instructions", op))[1]["instructions"] == []


async def test_nested_json_and_odd_parameters_get_400_not_500(live: LiveServer, http: aiohttp.ClientSession) -> None:
    deep = "[" * 30000 + "]" * 30000
    for path in ("/api/login", "/api/party/login"):
        async with http.post(f"{live.url}{path}", data=deep, headers={"Content-Type": "application/json"}) as r:
            assert r.status in (400, 413), (path, r.status)
    admin = await live.admin()
    status, body = await api(http, "GET", f"{live.url}/api/recordings?limit=²", admin)
    assert status == 400 and body["error"]["code"] == "bad_query"
    status, body = await api(http, "PUT", f"{live.url}/api/recordings/rec-x/category", admin,
                             {"category": {}, "reason": "x"})
    assert status == 400 and body["error"]["code"] == "bad_category"
    status, body = await api(http, "POST", f"{live.url}/api/actions", admin, {**ACTION, "planned_at": 1e400})
    assert status == 400


async def test_a_footage_request_with_nan_times_is_refused_and_the_list_stays_readable(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    live.add_user("op", "operator")
    live.add_user("judge", "supervisor")
    op, judge = await live.login("op"), await live.login("judge")
    live.add_unit("bc-01")
    live.add_unit("veh-01", "vehicle")
    _, action = await api(http, "POST", f"{live.url}/api/actions", op, ACTION)
    _, code = await api(http, "POST", f"{live.url}/api/party/codes", judge, {"case_number": CASE, "party_name": "张三"})
    async with http.post(f"{live.url}/api/party/login",
                         json={"case_number": CASE, "code": code["code"], "name": "张三"}) as r:
        party = (await r.json())["token"]
    body = '{"action_id": "%s", "reason": "调取", "from": NaN, "to": Infinity}' % action["id"]
    async with http.post(f"{live.url}/api/party/requests", data=body,
                         headers={"Authorization": f"Bearer {party}", "Content-Type": "application/json"}) as r:
        assert r.status == 400
    async with http.get(f"{live.url}/api/footage-requests", headers={"Authorization": f"Bearer {judge}"}) as r:
        text = await r.text()
    assert r.status == 200 and "NaN" not in text and json.loads(text)["requests"] == []


# -- 11. SDP without a=setup ---------------------------------------------------------------------
async def test_an_offer_without_setup_is_400_and_leaves_nothing_subscribed(
    live: LiveServer, http: aiohttp.ClientSession, vp8_loop: Any
) -> None:
    token = live.add_unit("bc-01")
    pub = await make_publisher(vp8_loop)
    await whip_publish(http, live.url, "bc-01", token, pub)
    viewer = await make_viewer()
    offer = "\r\n".join(line for line in viewer.pc.localDescription.sdp.split("\r\n")
                        if not line.startswith("a=setup:")) + "\r\n"
    op = await live.admin()
    fanouts = live.app[LIVE].relay.channel("bc-01").fanouts
    subscribed = [f.viewer_count for f in fanouts]
    for path, token_ in (("/whep/bc-01", op), ("/whip/bc-01", token)):
        async with http.post(f"{live.url}{path}", data=offer,
                             headers={"Authorization": f"Bearer {token_}", "Content-Type": "application/sdp"}) as r:
            assert r.status in (400, 409), (path, r.status)
            if r.status == 400:
                assert "a=setup" in (await r.json())["error"]["message"]
    assert [f.viewer_count for f in fanouts] == subscribed
    await viewer.close()
    await pub.close()


# -- 13, 14, 17. headers, oracles, leaks ------------------------------------------------------------
async def test_pages_carry_security_headers_and_healthz_says_only_ok(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    for page in ("/", "/field", "/portal"):
        async with http.get(f"{live.url}{page}") as r:
            assert r.status == 200
            assert "default-src 'self'" in r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
            assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["Referrer-Policy"] == "no-referrer"
    async with http.get(f"{live.url}/healthz") as r:
        assert await r.json() == {"ok": True}
    live.add_user("op", "operator")
    assert (await api(http, "GET", f"{live.url}/api/health", await live.login("op")))[0] == 403
    status, health = await api(http, "GET", f"{live.url}/api/health", await live.admin())
    assert status == 200 and "node" in health and "publishers" in health


async def test_an_unknown_unit_and_a_wrong_token_get_the_same_answer(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    live.add_unit("bc-01")
    answers = []
    for unit in ("bc-01", "no-such-unit"):
        async with http.post(f"{live.url}/api/units/{unit}/sos", json={},
                             headers={"Authorization": "Bearer wrong"}) as r:
            answers.append((r.status, (await r.json())["error"]["code"]))
    assert answers[0] == answers[1] == (401, "bad_token")


# -- 16. behind a reverse proxy, one party's lockout is not everyone's --------------------------
async def test_lockouts_follow_the_client_behind_a_trusted_proxy_and_ignore_forged_headers(
    make_live: Any, http: aiohttp.ClientSession, tmp_path: Any
) -> None:
    async def logins(live: LiveServer, forwarded_for: str, n: int) -> list[int]:
        out = []
        for i in range(n):
            async with http.post(f"{live.url}/api/login", json={"username": "clerk", "password": f"wrong-{i}"},
                                 headers={"X-Forwarded-For": forwarded_for}) as r:
                out.append(r.status)
        return out

    proxied: LiveServer = await make_live(server={"trusted_proxies": ["127.0.0.1/32"]})
    proxied.add_user("clerk", "operator")
    assert (await logins(proxied, "203.0.113.7", 8))[-1] == 429
    # Another client behind the same proxy is not locked out by the first one's guessing.
    async with http.post(f"{proxied.url}/api/login", json={"username": "clerk", "password": "operator-pass-1"},
                         headers={"X-Forwarded-For": "198.51.100.9"}) as r:
        assert r.status == 200

    direct: LiveServer = await make_live(server={"trusted_proxies": []}, storage={"data_dir": str(tmp_path / "other")})
    direct.add_user("clerk", "operator")
    assert (await logins(direct, "203.0.113.7", 8))[-1] == 429
    # Without a trusted proxy the header is the client's say-so: changing it does not escape the lock.
    async with http.post(f"{direct.url}/api/login", json={"username": "clerk", "password": "operator-pass-1"},
                         headers={"X-Forwarded-For": "198.51.100.9"}) as r:
        assert r.status == 429

"""Access that ends when it should (issue #14, findings 1-3): a rotated or disabled unit, and a
person logged out, expired, reset, re-roled or disabled, lose what they hold open within a second
— through the CLI on the same data directory (another process), as an administrator does it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
import socketio

from dispatch_server.appkeys import ACCOUNTS, ARCHIVE, LIVE
from tests.conftest import LiveServer
from tests.dispatch_server.test_actions import api
from tests.recordings.archive_support import of_type
from tests.support.peers import make_publisher, make_viewer, whep_view, whip_publish
from tests.support.server import cli, write_config
from tests.support.waits import until

REVOKE_S = 1.0  # the bound, plus the time the test itself needs to notice


def config_for(live: LiveServer, tmp: Any) -> Any:
    """A config for the CLI that names the running server's data directory."""
    return write_config(tmp / "cli.toml", live.settings.data_dir)


class Watched:
    """A Socket.IO client that records when it was disconnected and what it was told."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.gone = asyncio.Event()
        self.revoked: list[dict[str, Any]] = []
        self.pushes = 0

    async def connect(self, url: str, namespace: str, auth: dict[str, Any]) -> Watched:
        async def on_disconnect(reason: Any = None) -> None:
            self.gone.set()

        async def on_revoked(data: dict[str, Any]) -> None:
            self.revoked.append(data)

        async def on_push(data: Any = None) -> None:
            self.pushes += 1

        self.sio.on("disconnect", on_disconnect, namespace=namespace)
        self.sio.on("revoked", on_revoked, namespace=namespace)
        for name in ("unit_status", "alert", "action_update", "unit_positions"):
            self.sio.on(name, on_push, namespace=namespace)
        await self.sio.connect(url, namespaces=[namespace], auth=auth, transports=["websocket"], wait_timeout=10)
        return self

    async def closed_within(self, seconds: float) -> float:
        start = time.monotonic()
        await asyncio.wait_for(self.gone.wait(), seconds + 5)  # generous for a loaded machine ...
        took = time.monotonic() - start  # ... the measured figure is asserted by the caller
        print(f"revocation: closed {took:.2f} s after the change returned")  # quoted in docs/security.md (-s)
        return took


@pytest.mark.timeout(120)
async def test_rotating_a_units_token_closes_its_link_publish_and_telemetry(
    live: LiveServer, http: aiohttp.ClientSession, tmp_path: Any, vp8_loop: Any
) -> None:
    token = live.add_unit("bc-01")
    link = await Watched().connect(live.url, "/unit", {"unit_id": "bc-01", "token": token})
    telemetry = await http.ws_connect(f"{live.url}/telemetry/bc-01", headers={"Authorization": f"Bearer {token}"})
    pub = await make_publisher(vp8_loop)
    await whip_publish(http, live.url, "bc-01", token, pub)
    archive = live.app[ARCHIVE]
    await until(lambda: "bc-01" in archive.active, 30, "the unit is being recorded")

    out = cli(config_for(live, tmp_path), "add-unit", "bc-01", "--kind", "body", "--rotate")
    assert out.returncode == 0, out.stderr
    took = await link.closed_within(REVOKE_S)
    assert took <= REVOKE_S + 0.5, f"the unit's link stayed open {took:.1f} s after its token was rotated"
    assert "credentials revoked" in link.revoked[0]["reason"]
    msg = await asyncio.wait_for(telemetry.receive(), 10)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.POLICY_VIOLATION
    took = await until(lambda: "bc-01" not in live.app[LIVE].publishers, REVOKE_S + 5, "the publish ended")
    assert took <= REVOKE_S + 0.5
    # The publish ended at once: the unit is no longer publishing, and the old token opens nothing.
    async with http.get(f"{live.url}/api/units", headers={"Authorization": f"Bearer {await live.admin()}"}) as r:
        units = {u["id"]: u for u in (await r.json())["units"]}
    assert not units["bc-01"]["publishing"]
    again = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await again.connect(live.url, namespaces=["/unit"], auth={"unit_id": "bc-01", "token": token},
                            transports=["websocket"], wait_timeout=5)
    await pub.close()
    await telemetry.close()
    # The recording says why it stopped.
    await archive.close()
    closed = of_type(live.settings.archive_dir, "recording_closed")
    assert closed and closed[0]["end_cause"] == "access_revoked", closed


@pytest.mark.timeout(120)
async def test_disabling_a_unit_from_the_cli_disconnects_it(live: LiveServer, tmp_path: Any) -> None:
    token = live.add_unit("bc-02")
    link = await Watched().connect(live.url, "/unit", {"unit_id": "bc-02", "token": token})
    out = cli(config_for(live, tmp_path), "disable-unit", "bc-02")
    assert out.returncode == 0 and "disabled" in out.stdout, out.stderr
    assert await link.closed_within(REVOKE_S) <= REVOKE_S + 0.5
    refused = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    refused.on("connect_error", errors.append, namespace="/unit")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(live.url, namespaces=["/unit"], auth={"unit_id": "bc-02", "token": token},
                              transports=["websocket"], wait_timeout=5)
    assert errors[0]["data"]["code"] == "unit_disabled"
    assert cli(config_for(live, tmp_path), "disable-unit", "bc-02", "--enable").returncode == 0
    back = await Watched().connect(live.url, "/unit", {"unit_id": "bc-02", "token": token})
    await back.sio.disconnect()


@pytest.mark.timeout(120)
async def test_logout_closes_the_persons_console_and_viewers_at_once(
    live: LiveServer, http: aiohttp.ClientSession, vp8_loop: Any
) -> None:
    token = live.add_unit("bc-03")
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Watched().connect(live.url, "/console", {"token": op})
    pub = await make_publisher(vp8_loop)
    await whip_publish(http, live.url, "bc-03", token, pub)
    viewer = await make_viewer(audio=False)
    await whep_view(http, live.url, "bc-03", op, viewer)
    await viewer.wait_frames(5, timeout=20)
    assert [v for v in live.app[LIVE].viewers.values() if v.viewer == "op"]
    async with http.post(f"{live.url}/api/logout", headers={"Authorization": f"Bearer {op}"}) as r:
        assert r.status == 204
    assert await console.closed_within(REVOKE_S) <= REVOKE_S + 0.5
    before = console.pushes
    # Nothing more reaches the closed console, whatever happens; and the WHEP session is gone.
    async with http.get(f"{live.url}/api/units", headers={"Authorization": f"Bearer {op}"}) as r:
        assert r.status == 401
    await until(lambda: not [v for v in live.app[LIVE].viewers.values() if v.viewer == "op"], REVOKE_S + 5,
                "the logged-out person's viewing session ended")
    assert console.pushes == before
    await viewer.close()
    await pub.close()


@pytest.mark.timeout(120)
async def test_an_expired_session_loses_its_console(make_live: Any) -> None:
    live: LiveServer = await make_live(auth={"session_ttl_s": 2.0})
    live.add_user("op", "operator")
    console = await Watched().connect(live.url, "/console", {"token": await live.login("op")})
    start = time.monotonic()
    await asyncio.wait_for(console.gone.wait(), 20)
    assert time.monotonic() - start <= 2.0 + REVOKE_S + 1.0
    assert "session ended" in console.revoked[0]["reason"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", [
    ("add-user", "op", "--role", "operator", "--reset"),
    ("disable-user", "op"),
    ("end-sessions", "op"),
])
async def test_resetting_disabling_or_ending_sessions_closes_what_the_person_has_open(
    live: LiveServer, http: aiohttp.ClientSession, tmp_path: Any, command: tuple[str, ...]
) -> None:
    live.add_user("op", "operator")
    op = await live.login("op")
    console = await Watched().connect(live.url, "/console", {"token": op})
    out = cli(config_for(live, tmp_path), *command, stdin="a-new-password-1\n")
    assert out.returncode == 0, out.stderr
    assert await console.closed_within(REVOKE_S) <= REVOKE_S + 0.5
    async with http.get(f"{live.url}/api/me", headers={"Authorization": f"Bearer {op}"}) as r:
        assert r.status == 401


@pytest.mark.timeout(120)
async def test_a_role_change_applies_to_the_next_request_and_reconnects_the_console(
    live: LiveServer, http: aiohttp.ClientSession, tmp_path: Any
) -> None:
    live.add_user("sup", "supervisor")
    sup = await live.login("sup")
    assert (await api(http, "GET", f"{live.url}/api/audit", sup))[0] == 200
    console = await Watched().connect(live.url, "/console", {"token": sup})
    out = cli(config_for(live, tmp_path), "add-user", "sup", "--role", "operator", "--reset", stdin="another-pass-1\n")
    assert out.returncode == 0, out.stderr
    assert await console.closed_within(REVOKE_S) <= REVOKE_S + 0.5
    fresh = await live.login("sup", "another-pass-1")
    status, me = await api(http, "GET", f"{live.url}/api/me", fresh)
    assert status == 200 and me["role"] == "operator", "--reset --role changes the role (it printed 'updated' before)"
    assert (await api(http, "GET", f"{live.url}/api/audit", fresh))[0] == 403


@pytest.mark.timeout(60)
async def test_a_role_changed_in_the_database_reaches_an_existing_session(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    live.add_user("aud", "auditor")
    aud = await live.login("aud")
    assert (await api(http, "GET", f"{live.url}/api/audit", aud))[0] == 200
    live.app[ACCOUNTS].set_user_role("aud", "operator")
    assert (await api(http, "GET", f"{live.url}/api/audit", aud))[0] == 403

"""People and units: CLI administration, login, sessions that expire, roles."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiohttp

from tests.conftest import LiveServer
from tests.support.server import ServerProcess, add_unit, add_user, cli, login, write_config


async def test_cli_admin_acts_on_the_servers_data_directory(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    cfg = write_config(tmp_path / "config.toml", tmp_path / "data")
    token = add_unit(cfg, "veh-7", "vehicle")
    assert len(token) >= 40
    add_user(cfg, "judge", "supervisor", "correct horse battery")
    # Only hashes are stored.
    db = sqlite3.connect(tmp_path / "data" / "dispatch.sqlite3")
    (token_hash,) = db.execute("SELECT token_hash FROM units WHERE id='veh-7'").fetchone()
    (pw_hash,) = db.execute("SELECT password_hash FROM users WHERE username='judge'").fetchone()
    db.close()
    assert token not in token_hash and pw_hash.startswith("$argon2id$")

    dup = cli(cfg, "add-unit", "veh-7", "--kind", "vehicle")
    assert dup.returncode != 0 and "already exists" in dup.stderr
    short = cli(cfg, "add-user", "x", "--role", "operator", stdin="short\n")
    assert short.returncode != 0 and "at least 8" in short.stderr
    bad_role = cli(cfg, "add-user", "x", "--role", "king", stdin="long enough pw\n")
    assert bad_role.returncode != 0 and "invalid choice" in bad_role.stderr

    server = ServerProcess(cfg).start()
    try:
        person = await login(server.url, "judge", "correct horse battery")
        async with http.get(f"{server.url}/api/me", headers={"Authorization": f"Bearer {person}"}) as r:
            assert (await r.json())["role"] == "supervisor"
        async with http.get(f"{server.url}/api/units", headers={"Authorization": f"Bearer {person}"}) as r:
            assert [u["id"] for u in (await r.json())["units"]] == ["veh-7"]
        # A token rotated from the CLI takes effect on the running server.
        rotated = cli(cfg, "add-unit", "veh-7", "--kind", "vehicle", "--rotate").stdout.strip().splitlines()[-1]
        for t, status in ((token, 401), (rotated, 400)):
            async with http.post(f"{server.url}/whip/veh-7", data="v=0\r\n",
                                 headers={"Authorization": f"Bearer {t}", "Content-Type": "application/sdp"}) as r:
                assert r.status == status, await r.text()
    finally:
        assert server.stop() == 0


async def test_login_errors_and_logout(live: LiveServer, http: aiohttp.ClientSession) -> None:
    live.add_user("op", "operator")
    for body in ({"username": "op", "password": "wrong-password"}, {"username": "nobody", "password": "x" * 9}):
        async with http.post(f"{live.url}/api/login", json=body) as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "bad_credentials"
    async with http.post(f"{live.url}/api/login", data=b"{not json") as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == "bad_json"
    async with http.post(f"{live.url}/api/login", json={"username": "op"}) as r:
        assert r.status == 400 and "password" in (await r.json())["error"]["message"]
    async with http.post(f"{live.url}/api/login", data=b"x" * 200_000) as r:
        assert r.status == 413
    token = await live.login("op")
    auth = {"Authorization": f"Bearer {token}"}
    async with http.post(f"{live.url}/api/logout", headers=auth) as r:
        assert r.status == 204
    async with http.get(f"{live.url}/api/me", headers=auth) as r:
        assert r.status == 401


async def test_sessions_expire(make_live: object, http: aiohttp.ClientSession) -> None:
    now = [1_900_000_000.0]
    live: LiveServer = await make_live(clock=lambda: now[0], auth={"session_ttl_s": 60})  # type: ignore[operator]
    live.add_user("op", "operator")
    token = await live.login("op")
    auth = {"Authorization": f"Bearer {token}"}
    async with http.get(f"{live.url}/api/units", headers=auth) as r:
        assert r.status == 200
    now[0] += 61
    async with http.get(f"{live.url}/api/units", headers=auth) as r:
        assert r.status == 401
        assert (await r.json())["error"]["code"] == "session_expired"


async def test_roles_are_checked_on_every_route(live: LiveServer, http: aiohttp.ClientSession) -> None:
    live.add_unit("bc-01")
    live.add_user("aud", "auditor")
    auditor = await live.login("aud")
    h = {"Authorization": f"Bearer {auditor}"}
    async with http.get(f"{live.url}/api/units", headers=h) as r:
        assert r.status == 200  # auditors may read the roster
    async with http.post(f"{live.url}/whep/bc-01", data="v=0", headers={**h, "Content-Type": "application/sdp"}) as r:
        assert r.status == 403  # but not watch live
    for path in ("/api/units", "/api/me", "/api/console-config"):
        async with http.get(f"{live.url}{path}") as r:
            assert r.status == 401
        async with http.get(f"{live.url}{path}", headers={"Authorization": "Bearer forged"}) as r:
            assert r.status == 401


def test_tokens_never_start_with_a_dash() -> None:
    """``field-client --token TOKEN``: a token starting with '-' would read as an option (1 in 64 did)."""
    from dispatch_server.auth import new_token

    assert not any(new_token().startswith("-") for _ in range(5000))

"""Issue #14, finding 9: a stranger cannot hold connections. Slow request heads and slow bodies are
closed after their deadlines, one address cannot open more than its share, and meanwhile (and
afterwards) an operator is served at once — in the tests' server and in ``dispatch-server serve``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from tests.conftest import LiveServer
from tests.support.server import ServerProcess, add_user, login, write_config
from tests.support.slow_clients import SLOW_BODY, SLOW_HEAD, hold
from tests.support.waits import until

OTHER = "127.0.0.2"  # another address on the loopback: a client who is not the one flooding


async def me(base: str, token: str, local_address: str | None = None) -> float:
    """``GET /api/me`` on a fresh connection; seconds it took (fails unless 200)."""
    connector = aiohttp.TCPConnector(local_addr=(local_address, 0) if local_address else None)
    async with aiohttp.ClientSession(connector=connector) as http:
        start = time.monotonic()
        async with http.get(f"{base}/api/me", headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200, await r.text()
        return time.monotonic() - start


async def test_slow_request_heads_are_closed_after_the_header_timeout_while_an_operator_is_served(
    make_live: Any
) -> None:
    live: LiveServer = await make_live(server={"header_timeout_s": 1.0})
    live.add_user("op", "operator")
    op = await live.login("op")
    slow = [asyncio.create_task(hold(live.url, SLOW_HEAD, every_s=0.2, limit_s=15)) for _ in range(50)]
    await until(lambda: live.guard.stats.open >= 50, 10, "50 slow heads connected")
    assert await me(live.url, op) < 1.0, "served while 50 connections dribble headers"
    held = await asyncio.gather(*slow)
    closed = [h.closed_after_s for h in held]
    assert all(c is not None and 0.8 <= c <= 4.0 for c in closed), closed
    assert all(h.received == b"" for h in held), "closed without an answer: a head never came"
    assert live.guard.stats.head_timeouts == 50
    assert await me(live.url, op) < 1.0


async def test_slow_bodies_get_408_and_are_closed_while_an_operator_is_served(make_live: Any) -> None:
    live: LiveServer = await make_live(server={"body_timeout_s": 1.0})
    live.add_user("op", "operator")
    op = await live.login("op")
    slow = [asyncio.create_task(hold(live.url, SLOW_BODY, every_s=0.2, limit_s=20)) for _ in range(30)]
    await until(lambda: live.guard.stats.open >= 30, 10, "30 slow bodies connected")
    assert await me(live.url, op) < 1.0
    held = await asyncio.gather(*slow)
    # read_body's deadline: body_timeout_s + 60,000 B / 32 KiB/s ≈ 2.8 s; then the answer, then at the
    # latest the backstop (+5 s) closes what aiohttp would otherwise linger over.
    assert all(h.status == 408 for h in held), [h.received[:80] for h in held]
    assert all(b'"body_timeout"' in h.received for h in held)
    assert all(h.closed_after_s is not None and 2.0 <= h.closed_after_s <= 12.0 for h in held), \
        [h.closed_after_s for h in held]
    assert await me(live.url, op) < 1.0


async def test_a_body_nobody_reads_in_time_is_cut_by_the_backstop(make_live: Any) -> None:
    """Engine.IO reads polling POSTs itself, without a deadline: the guard's backstop closes them."""
    live: LiveServer = await make_live(server={"body_timeout_s": 0.5, "handshake_timeout_s": 30.0})
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{live.url}/socket.io/?EIO=4&transport=polling") as r:
            handshake = await r.text()
    sid = handshake.split('"sid":"', 1)[1].split('"', 1)[0]
    head = (f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: dispatch\r\n"
            "Content-Type: text/plain\r\nContent-Length: 5000\r\n\r\n").encode()
    held = await hold(live.url, head, every_s=60, limit_s=20)  # the head, then nothing
    # deadline 0.5 s + 5,000 B / 32 KiB/s, plus the 5 s grace
    assert held.closed_after_s is not None and 5.0 <= held.closed_after_s <= 9.0, held
    assert live.guard.stats.body_timeouts == 1


async def test_one_address_cannot_open_more_than_its_cap_and_others_are_served(make_live: Any) -> None:
    live: LiveServer = await make_live(server={"max_connections_per_address": 20, "header_timeout_s": 60.0})
    live.add_user("op", "operator")
    op = await live.login("op")
    await until(lambda: live.guard.connections_of("127.0.0.1") == 0, 10, "the login's connection closed")
    opened = [asyncio.Event() for _ in range(20)]
    holders = [asyncio.create_task(hold(live.url, SLOW_HEAD, every_s=5, limit_s=30, opened=e)) for e in opened]
    await asyncio.gather(*(e.wait() for e in opened))
    await until(lambda: live.guard.connections_of("127.0.0.1") == 20, 10, "20 connections counted")
    over = await hold(live.url, SLOW_HEAD, every_s=5, limit_s=10)
    assert over.closed_after_s is not None and over.closed_after_s < 1.0 and over.received == b"", over
    assert live.guard.stats.refused == 1
    assert await me(live.url, op, local_address=OTHER) < 1.0, "another address is served"
    for task in holders:
        task.cancel()
    await asyncio.gather(*holders, return_exceptions=True)
    await until(lambda: live.guard.connections_of("127.0.0.1") == 0, 10, "the 20 closed")
    assert await me(live.url, op) < 1.0, "and the address itself again once it holds less"


async def test_websockets_outlive_the_header_timeout(make_live: Any, http: aiohttp.ClientSession) -> None:
    """After the upgrade, Engine.IO's pings and the telemetry heartbeat decide, not the head timer."""
    live: LiveServer = await make_live(server={"header_timeout_s": 0.3})
    token = live.add_unit("bc-01")
    link = socketio.AsyncClient(reconnection=False)
    gone = asyncio.Event()
    link.on("disconnect", lambda *_: gone.set(), namespace="/unit")
    await link.connect(live.url, namespaces=["/unit"], auth={"unit_id": "bc-01", "token": token},
                       transports=["websocket"], wait_timeout=5)
    telemetry = await http.ws_connect(f"{live.url}/telemetry/bc-01", headers={"Authorization": f"Bearer {token}"})
    with pytest.raises(TimeoutError):  # nothing may happen for several head timeouts
        await asyncio.wait_for(gone.wait(), 1.5)
    answer = await link.call("sync", {"after_seq": 0}, namespace="/unit", timeout=5)
    assert answer["ok"] is True
    await telemetry.send_bytes(b"\x80")  # an empty msgpack map: a bad batch, answered on the open channel
    reply = await asyncio.wait_for(telemetry.receive(), 5)
    assert reply.type is aiohttp.WSMsgType.BINARY
    await telemetry.close()
    await link.disconnect()
    assert live.guard.stats.head_timeouts == 0


@pytest.mark.timeout(120)
async def test_dispatch_server_serve_runs_the_same_guard(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", tmp_path / "data",
                          "header_timeout_s = 1.0\nbody_timeout_s = 1.0\nmax_connections_per_address = 40\n"
                          "handshake_timeout_s = 1.0\n")
    add_user(config, "op", "operator", "operator-pass-1")
    server = ServerProcess(config).start()
    try:
        op = await login(server.url, "op", "operator-pass-1")
        heads = [asyncio.create_task(hold(server.url, SLOW_HEAD, every_s=0.2, limit_s=15)) for _ in range(15)]
        bodies = [asyncio.create_task(hold(server.url, SLOW_BODY, every_s=0.2, limit_s=20)) for _ in range(15)]
        await asyncio.sleep(0)
        assert await me(server.url, op, local_address=OTHER) < 1.0
        held_heads, held_bodies = await asyncio.gather(asyncio.gather(*heads), asyncio.gather(*bodies))
        assert all(h.closed_after_s is not None and h.closed_after_s <= 4.0 and not h.received for h in held_heads)
        assert all(h.status == 408 and h.closed_after_s is not None and h.closed_after_s <= 12.0
                   for h in held_bodies), [(h.status, h.closed_after_s) for h in held_bodies]
        # The cap: 40 idle connections held, the 41st closed at once.
        opened = [asyncio.Event() for _ in range(40)]
        idle = [asyncio.create_task(hold(server.url, b"", every_s=60, limit_s=30, opened=e)) for e in opened]
        await asyncio.gather(*(e.wait() for e in opened))
        over = await hold(server.url, b"", every_s=60, limit_s=0.9)
        assert over.closed_after_s is not None, "the 41st connection was closed at once"
        assert await me(server.url, op, local_address=OTHER) < 1.0
        await asyncio.gather(*idle)  # the head timeout closes the 40 idle ones too
        # Engine.IO: a websocket that joins no namespace, and a polling POST whose body never comes
        # (the backstop cancels Engine.IO's read: no traceback in the server's output).
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{server.url}/socket.io/?EIO=4&transport=websocket")
            async with http.get(f"{server.url}/socket.io/?EIO=4&transport=polling") as r:
                sid = (await r.text()).split('"sid":"', 1)[1].split('"', 1)[0]
            post = (f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: dispatch\r\n"
                    "Content-Type: text/plain\r\nContent-Length: 100\r\n\r\n").encode()
            unread = await hold(server.url, post, every_s=60, limit_s=15)
            assert unread.closed_after_s is not None and unread.closed_after_s <= 8.0, unread
            async with asyncio.timeout(10):
                async for _ in ws:  # the open packet, then the close after handshake_timeout_s
                    pass
            assert ws.closed
        assert await me(server.url, op) < 1.0
    finally:
        server.stop()  # fails on a traceback in the server's output

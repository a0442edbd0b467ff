"""Issue #14, finding 9: an Engine.IO session that joins no namespace is closed after
``server.handshake_timeout_s``, and one address cannot pile such sessions up — while units and
consoles that do join stay connected."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import socketio

from dispatch_server.appkeys import HANDSHAKES, SIO
from tests.conftest import LiveServer
from tests.support.raw_engineio import RawEngineIO
from tests.support.waits import until


async def test_a_socket_that_joins_no_namespace_is_closed_and_a_unit_stays(
    make_live: Any, http: aiohttp.ClientSession
) -> None:
    live: LiveServer = await make_live(server={"handshake_timeout_s": 1.0})
    token = live.add_unit("bc-01")
    unit = socketio.AsyncClient(reconnection=False)
    gone = asyncio.Event()
    unit.on("disconnect", lambda *_: gone.set(), namespace="/unit")
    await unit.connect(live.url, namespaces=["/unit"], auth={"unit_id": "bc-01", "token": token},
                       transports=["websocket"], wait_timeout=5)
    silent = await RawEngineIO.open(http, live.url)  # handshake, then nothing
    refused = await RawEngineIO.open(http, live.url)  # tries a namespace with a wrong token, then stays
    await refused.send('40/unit,{"unit_id": "bc-01", "token": "wrong"}')
    assert (await refused.receive_text()).startswith("44/unit,")
    root = await RawEngineIO.open(http, live.url)  # tries "/", which takes nobody
    await root.send("40")
    assert (await root.receive_text()).startswith("44")
    took = await asyncio.gather(silent.closed_after(10), refused.closed_after(10), root.closed_after(10))
    assert all(1.0 <= t <= 2.5 for t in took), took
    assert live.app[HANDSHAKES].closed == 3
    assert not gone.is_set(), "the unit that joined its namespace stays"
    assert (await unit.call("sync", {"after_seq": 0}, namespace="/unit", timeout=5))["ok"] is True
    await unit.disconnect()


async def test_a_socket_that_leaves_its_namespace_is_a_strangers_again(
    make_live: Any, http: aiohttp.ClientSession
) -> None:
    live: LiveServer = await make_live(server={"handshake_timeout_s": 1.0})
    token = live.add_unit("bc-01")
    raw = await RawEngineIO.open(http, live.url)
    await raw.send("40/unit," + json.dumps({"unit_id": "bc-01", "token": token}))
    assert (await raw.receive_text()).startswith("40/unit,")
    await until(lambda: live.app[HANDSHAKES].unattached() == 0, 5, "the joined socket is not watched")
    await raw.send("41/unit,")  # leaves /unit, keeps the Engine.IO session
    raw.opened = time.monotonic()  # the clock starts when it left
    assert 1.0 <= await raw.closed_after(10) <= 2.5


async def test_one_address_cannot_pile_up_handshakes(make_live: Any) -> None:
    live: LiveServer = await make_live(server={"handshake_timeout_s": 1.0, "max_connections_per_address": 5})
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(7):  # polling handshakes: no connection stays open, the sessions do
            async with http.get(f"{live.url}/socket.io/?EIO=4&transport=polling") as r:
                statuses.append(r.status)
    assert statuses == [200] * 5 + [401] * 2
    assert live.app[HANDSHAKES].refused == 2
    other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=other) as http:
        async with http.get(f"{live.url}/socket.io/?EIO=4&transport=polling") as r:
            assert r.status == 200, "another address is not held up"
    # The polling sessions (which nobody polls again) end after their timeout; then the address
    # may shake hands again.
    await until(lambda: not live.app[SIO].eio.sockets, 5, "the unattached polling sessions closed")
    assert live.app[HANDSHAKES].closed == 6 and live.app[HANDSHAKES].unattached() == 0
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{live.url}/socket.io/?EIO=4&transport=polling") as r:
            assert r.status == 200

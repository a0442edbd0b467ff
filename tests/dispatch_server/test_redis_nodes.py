"""Two server processes sharing one redis-server: a console on node A sees a unit that connects
and publishes on node B, live, and the roster on either node agrees."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from aiortc import RTCSessionDescription

from tests.support.peers import make_publisher, make_viewer, whep_view
from tests.support.server import ServerProcess, add_unit, add_user, login, write_config

pytestmark = pytest.mark.both_engines  # the outbox, actions, alerts... on SQLite and on PostgreSQL


async def test_unit_on_one_node_is_live_for_a_console_on_the_other(
    tmp_path: Path, redis_url: str, http: aiohttp.ClientSession, vp8_loop: object
) -> None:
    data = tmp_path / "data"
    extra = f'[redis]\nurl = "{redis_url}"\n'
    # The nodes share the database but each records into its own archive (one writer per ledger).
    cfg_a = write_config(tmp_path / "a.toml", data, extra + f'[archive]\ndir = "{tmp_path / "archive-a"}"\n')
    cfg_a.write_text(cfg_a.read_text().replace('port = 0\n', 'port = 0\nnode_id = "node-a"\n'))
    cfg_b = write_config(tmp_path / "b.toml", data, extra + f'[archive]\ndir = "{tmp_path / "archive-b"}"\n')
    cfg_b.write_text(cfg_b.read_text().replace('port = 0\n', 'port = 0\nnode_id = "node-b"\n'))
    token = add_unit(cfg_a, "bc-01")
    add_user(cfg_a, "op", "operator", "operator-pass-1")
    node_a = ServerProcess(cfg_a).start()
    node_b = ServerProcess(cfg_b).start()
    console = socketio.AsyncClient(reconnection=False)
    unit = socketio.AsyncClient(reconnection=False)
    pub = viewer = None
    try:
        op = await login(node_a.url, "op", "operator-pass-1")
        statuses: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        console.on("unit_status", statuses.put_nowait, namespace="/console")
        await console.connect(node_a.url, namespaces=["/console"], auth={"token": op}, transports=["websocket"])

        async def next_status(pred: Any) -> dict[str, Any]:
            while True:
                s = await asyncio.wait_for(statuses.get(), 15)
                if pred(s):
                    return s

        await unit.connect(node_b.url, namespaces=["/unit"], auth={"unit_id": "bc-01", "token": token},
                           transports=["websocket"])
        s = await next_status(lambda s: s["online"])
        assert s["node"] == "node-b"

        pub = await make_publisher(vp8_loop)  # type: ignore[arg-type]
        ack = await unit.call("publish", {"sdp": pub.pc.localDescription.sdp}, namespace="/unit", timeout=10)
        assert ack["ok"], ack
        await pub.pc.setRemoteDescription(RTCSessionDescription(sdp=ack["sdp"], type="answer"))
        assert (await next_status(lambda s: s["publishing"]))["video_codec"] == "VP8"

        auth = {"Authorization": f"Bearer {op}"}
        for node in (node_a, node_b):
            async with http.get(f"{node.url}/api/units", headers=auth) as r:
                [u] = (await r.json())["units"]
                assert u["publishing"] and u["node"] == "node-b"

        # Media is relayed by the node the unit publishes to; the other node says where.
        viewer = await make_viewer()
        async with http.post(f"{node_a.url}/whep/bc-01", data=viewer.pc.localDescription.sdp,
                             headers={**auth, "Content-Type": "application/sdp"}) as r:
            assert r.status == 409
            body = await r.json()
            assert body["error"]["code"] == "publishing_elsewhere" and "node-b" in body["error"]["message"]
        await whep_view(http, node_b.url, "bc-01", op, viewer)
        await viewer.wait_frames(15, timeout=10)

        await unit.disconnect()
        await pub.close()
        pub = None
        s = await next_status(lambda s: not s["publishing"] and not s["online"])
        assert s["id"] == "bc-01"
    finally:
        if viewer is not None:
            await viewer.close()
        if pub is not None:
            await pub.close()
        await console.disconnect()
        node_a.stop()
        node_b.stop()

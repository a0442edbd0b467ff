"""Socket.IO namespaces: authentication at connect, offer/answer, roster events, bad messages."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import socketio
from aiortc import RTCSessionDescription

from tests.conftest import LiveServer
from tests.support.peers import make_publisher, make_viewer


async def connect(url: str, namespace: str, auth: Any) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, namespaces=[namespace], auth=auth, transports=["websocket"], wait_timeout=5)
    return client


@pytest.mark.parametrize(
    ("namespace", "auth", "fragment"),
    [
        ("/unit", None, "auth="),
        ("/unit", {"unit_id": "bc-01", "token": "wrong"}, "wrong token"),
        ("/unit", {"unit_id": "ghost", "token": "x"}, "unknown unit"),
        ("/unit", {"unit_id": "../x", "token": "x"}, "not valid"),
        ("/console", None, "not logged in"),
        ("/console", {"token": "forged"}, "unknown or revoked"),
    ],
)
async def test_connect_is_refused_with_the_reason(live: LiveServer, namespace: str, auth: Any, fragment: str) -> None:
    live.add_unit("bc-01")
    client = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    client.on("connect_error", errors.append, namespace=namespace)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(live.url, namespaces=[namespace], auth=auth, transports=["websocket"], wait_timeout=5)
    assert len(errors) == 1
    refusals = ("unauthorized", "bad_token", "bad_unit_id")
    assert fragment in errors[0]["message"] and errors[0]["data"]["code"] in refusals


async def test_unit_publishes_over_socketio_and_operators_see_it(live: LiveServer, vp8_loop: object) -> None:
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    console = socketio.AsyncClient(reconnection=False)
    statuses: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    roster: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    console.on("unit_status", statuses.put_nowait, namespace="/console")

    def on_roster(data: dict[str, Any]) -> None:
        if not roster.done():
            roster.set_result(data)

    console.on("roster", on_roster, namespace="/console")
    await console.connect(live.url, namespaces=["/console"], auth={"token": await live.login("op")},
                          transports=["websocket"])
    assert [u["id"] for u in (await asyncio.wait_for(roster, 5))["units"]] == ["bc-01"]

    async def next_status(pred: Any) -> dict[str, Any]:
        while True:
            s = await asyncio.wait_for(statuses.get(), 10)
            if pred(s):
                return s

    unit = await connect(live.url, "/unit", {"unit_id": "bc-01", "token": token})
    assert (await next_status(lambda s: s["online"]))["publishing"] is False

    pub = await make_publisher(vp8_loop)  # type: ignore[arg-type]
    ack = await unit.call("publish", {"sdp": pub.pc.localDescription.sdp}, namespace="/unit", timeout=10)
    assert ack["ok"], ack
    await pub.pc.setRemoteDescription(RTCSessionDescription(sdp=ack["sdp"], type="answer"))
    s = await next_status(lambda s: s["publishing"])
    assert s["video_codec"] == "VP8"

    fix = await unit.call("position", {"lat": 38.04, "lon": 114.51, "ts": time.time()}, namespace="/unit")
    assert fix == {"ok": True}
    s = await next_status(lambda s: s["position"] is not None)
    assert s["position"]["lat"] == 38.04

    # Operators watch over Socket.IO too.
    viewer = await make_viewer()
    answer = await console.call("watch", {"unit_id": "bc-01", "sdp": viewer.pc.localDescription.sdp},
                                namespace="/console", timeout=10)
    assert answer["ok"], answer
    viewer.mime = "video/VP8"
    await viewer.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    await viewer.wait_frames(10, timeout=10)
    assert (await console.call("unwatch", {"session_id": answer["session_id"]}, namespace="/console"))["ok"]

    assert (await unit.call("unpublish", {"session_id": ack["session_id"]}, namespace="/unit"))["ok"]
    await next_status(lambda s: not s["publishing"])
    await unit.disconnect()
    await next_status(lambda s: not s["online"])
    await viewer.close()
    await pub.close()
    await console.disconnect()


async def test_garbage_and_oversized_messages_get_errors_and_the_link_stays_up(live: LiveServer) -> None:
    token = live.add_unit("bc-01")
    unit = await connect(live.url, "/unit", {"unit_id": "bc-01", "token": token})
    cases: list[tuple[str, Any, str]] = [
        ("publish", "not an object", "bad_message"),
        ("publish", {"sdp": 42}, "bad_message"),
        ("publish", {"sdp": "garbage"}, "bad_sdp"),
        ("publish", {"sdp": "v=0\r\n" + "x" * 200_000}, "too_large"),
        ("position", {"lat": 91, "lon": 0, "ts": 0}, "bad_message"),
        ("position", {"lat": "north", "lon": 0, "ts": 0}, "bad_message"),
        ("position", [1, 2, 3], "bad_message"),
        ("unpublish", {"session_id": "nope"}, "unknown_session"),
    ]
    for event, data, code in cases:
        ack = await unit.call(event, data, namespace="/unit", timeout=5)
        assert ack["ok"] is False and ack["error"]["code"] == code, (event, ack)
        assert ack["error"]["message"]
    ok = await unit.call("position", {"lat": 38.04, "lon": 114.51, "ts": time.time(), "speed": 1.5}, namespace="/unit")
    assert ok == {"ok": True}
    assert unit.connected
    await unit.disconnect()

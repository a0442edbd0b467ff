"""The telemetry channel (``GET /telemetry/{unit_id}``): real server, real aiohttp websocket clients."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import msgpack
import pytest

from tests.conftest import LiveServer
from tests.support.unit_client import Console

pytestmark = pytest.mark.timeout(60)


async def channel(
    http: aiohttp.ClientSession, live: LiveServer, unit_id: str, token: str
) -> aiohttp.ClientWebSocketResponse:
    return await http.ws_connect(f"{live.url}/telemetry/{unit_id}", headers={"Authorization": f"Bearer {token}"})


async def reply(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=10)
    assert msg.type is aiohttp.WSMsgType.BINARY, msg
    doc: dict[str, Any] = msgpack.unpackb(msg.data)
    return doc


async def batch(ws: aiohttp.ClientWebSocketResponse, seq: int, fixes: list[dict[str, Any]]) -> dict[str, Any]:
    await ws.send_bytes(msgpack.packb({"seq": seq, "fixes": fixes}))
    return await reply(ws)


async def health(http: aiohttp.ClientSession, live: LiveServer) -> dict[str, Any]:
    """The node's figures (admins only; the public /healthz says only ok)."""
    token = await live.admin()
    async with http.get(f"{live.url}/api/health", headers={"Authorization": f"Bearer {token}"}) as r:
        doc: dict[str, Any] = await r.json()
        return doc


async def track(http: aiohttp.ClientSession, live: LiveServer, op: str, unit_id: str) -> list[float]:
    async with http.get(f"{live.url}/api/units/{unit_id}/track", params={"from": "2000-01-01T00:00:00Z"},
                        headers={"Authorization": f"Bearer {op}"}) as r:
        assert r.status == 200, await r.text()
        doc = await r.json(content_type=None)
    return [f["properties"]["ts"] for f in doc["features"] if f["properties"].get("kind") == "fix"]


@pytest.mark.parametrize("unit_id, headers, status, code", [
    ("bc-01", {}, 401, "unauthorized"),
    ("bc-01", {"Authorization": "Bearer wrong"}, 401, "bad_token"),
    # An unknown unit answers exactly like a wrong token: a stranger learns nothing of which units exist.
    ("bc-99", {"Authorization": "Bearer wrong"}, 401, "bad_token"),
])
async def test_the_upgrade_is_refused_with_a_json_error_naming_the_problem(
    live: LiveServer, http: aiohttp.ClientSession, unit_id: str, headers: dict[str, str], status: int, code: str
) -> None:
    live.add_unit("bc-01")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{live.url}/telemetry/{unit_id}", headers=headers)
    assert refused.value.status == status
    # The same request without the upgrade shows the body a client gets.
    async with http.get(f"{live.url}/telemetry/{unit_id}", headers=headers) as r:
        assert r.status == status
        assert (await r.json())["error"]["code"] == code


async def test_batches_are_stored_acknowledged_in_order_and_duplicates_counted(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    op = await live.login("op")
    ws = await channel(http, live, "bc-01", token)
    t0 = round(time.time() - 30, 3)
    first = await batch(ws, 7, [{"lat": 39.9, "lon": 116.4, "ts": t0, "speed": 1.5}])
    assert first == {"seq": 7, "ok": True, "accepted": 1, "duplicates": 0, "rejected": []}
    # Pipelined batches are answered in order; a resent fix is a duplicate, not an error.
    for seq in (8, 9, 10):
        await ws.send_bytes(msgpack.packb({"seq": seq, "fixes": [{"lat": 39.9, "lon": 116.4, "ts": t0 + seq - 7},
                                                                  {"lat": 39.9, "lon": 116.4, "ts": t0}]}))
    answers = [await reply(ws) for _ in range(3)]
    assert [a["seq"] for a in answers] == [8, 9, 10]
    assert all(a["ok"] and a["accepted"] == 1 and a["duplicates"] == 1 for a in answers)
    assert await track(http, live, op, "bc-01") == [t0, t0 + 1, t0 + 2, t0 + 3]
    assert (await health(http, live))["telemetry"]["batches"] == 4
    await ws.close()


async def test_bad_frames_get_a_clear_error_and_the_channel_stays_open(
    live: LiveServer, http: aiohttp.ClientSession
) -> None:
    token = live.add_unit("bc-01")
    ws = await channel(http, live, "bc-01", token)
    now = time.time()

    await ws.send_str('{"seq": 1, "fixes": []}')
    text = await reply(ws)
    assert text["ok"] is False and text["seq"] is None
    assert text["error"] == {"code": "bad_message", "message": "telemetry frames are binary msgpack, not text"}

    cases: list[tuple[bytes, Any, str]] = [
        (b"\xc1garbage", None, "not valid msgpack"),
        (msgpack.packb([1, 2, 3]), None, "expected a msgpack map"),
        (msgpack.packb({"seq": -1, "fixes": []}), None, "'seq' must be a non-negative integer"),
        (msgpack.packb({"seq": 3}), 3, "missing 'fixes'"),
        (msgpack.packb({"seq": 4, "fixes": [], "extra": 1}), 4, "unknown keys"),
        (msgpack.packb({"seq": 5, "fixes": {"lat": 1}}), 5, "expected a list of fixes"),
        (msgpack.packb({"seq": 6, "fixes": [{}] * 501}), 6, "501 fixes in one batch; the limit is 500"),
    ]
    for data, seq, message in cases:
        await ws.send_bytes(data)
        answer = await reply(ws)
        assert answer["ok"] is False and answer["seq"] == seq, answer
        assert answer["error"]["code"] == "bad_message" and message in answer["error"]["message"], answer

    # A batch with one bad fix: the good ones are stored, the bad one is named by index.
    mixed = await batch(ws, 7, [{"lat": 39.9, "lon": 116.4, "ts": now - 5}, {"lat": 95.0, "lon": 116.4, "ts": now - 4},
                                {"lat": 39.9, "lon": 116.4, "ts": now + 3600}])
    assert mixed["ok"] is True and mixed["accepted"] == 1
    assert [r["index"] for r in mixed["rejected"]] == [1, 2]
    assert "'lat'=95.0 is outside" in mixed["rejected"][0]["error"]
    assert "in the future" in mixed["rejected"][1]["error"]

    stats = (await health(http, live))
    assert stats["telemetry"]["bad_frames"] == 1 + len(cases)
    assert stats["rejected_fixes"] == 2
    assert not ws.closed
    await ws.close()


async def test_an_oversized_frame_closes_only_that_channel_with_1009(
    make_live: Any, http: aiohttp.ClientSession
) -> None:
    live: LiveServer = await make_live(server={"max_message_bytes": 4096})
    tokens = {u: live.add_unit(u) for u in ("bc-01", "bc-02")}
    big = await channel(http, live, "bc-01", tokens["bc-01"])
    other = await channel(http, live, "bc-02", tokens["bc-02"])
    oversized = {"seq": 1, "fixes": [{"lat": 1.0, "lon": 1.0, "ts": time.time(), "pad": "x" * 5000}]}
    await big.send_bytes(msgpack.packb(oversized))
    msg = await big.receive(timeout=10)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    answer = await batch(other, 1, [{"lat": 39.9, "lon": 116.4, "ts": time.time() - 1}])
    assert answer["ok"] and answer["accepted"] == 1
    await other.close()


async def test_a_fix_reaches_the_console_and_channels_close_with_1001_at_shutdown(
    make_live: Any, http: aiohttp.ClientSession
) -> None:
    live: LiveServer = await make_live()
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    console = await Console(live.url, await live.login("op")).connect()
    ws = await channel(http, live, "bc-01", token)
    t0 = time.time() - 2
    await batch(ws, 1, [{"lat": 39.9, "lon": 116.4, "ts": t0}])
    first = await console.next("unit_status", lambda s: s["id"] == "bc-01" and s["position"] is not None)
    assert first["position"]["lat"] == 39.9
    await batch(ws, 2, [{"lat": 39.91, "lon": 116.41, "ts": t0 + 1}])
    moved = await console.next("unit_positions", lambda u: u["id"] == "bc-01")
    assert moved["position"]["lat"] == 39.91 and moved["position"]["ts"].endswith("Z")
    await console.close()

    await live.app.shutdown()  # what a stopping server does before it waits for open connections
    msg = await ws.receive(timeout=10)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.GOING_AWAY


async def test_many_channels_at_once_each_get_their_own_answers(live: LiveServer, http: aiohttp.ClientSession) -> None:
    tokens = {f"bc-{i:02d}": live.add_unit(f"bc-{i:02d}") for i in range(40)}
    channels = [await channel(http, live, u, t) for u, t in tokens.items()]
    t0 = time.time() - 60

    async def run(i: int, ws: aiohttp.ClientWebSocketResponse) -> list[int]:
        return [(await batch(ws, k, [{"lat": 30 + i / 100, "lon": 110.0, "ts": t0 + k}]))["accepted"]
                for k in range(10)]

    results = await asyncio.gather(*(run(i, ws) for i, ws in enumerate(channels)))
    assert results == [[1] * 10] * 40
    assert (await health(http, live))["telemetry"]["channels"] == 40
    for ws in channels:
        await ws.close()

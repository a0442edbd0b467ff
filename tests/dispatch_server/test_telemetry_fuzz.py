"""Random frames on a unit's telemetry channel ``/telemetry/{unit}`` (issue #14's standing campaign).

Binary frames of random bytes, msgpack of random structures (maps, arrays, every scalar msgpack
has, ``NaN``, extension types), plausible batches with wrong fields, and text frames: each must be
answered with one binary msgpack reply — ``{"seq", "ok": true, ...}`` or ``{"seq", "ok": false,
"error": {"code", "message"}}`` — and the channel must stay open, with nothing in the server's log
as an error. (A frame over ``server.max_message_bytes`` closes the channel with 1009 by design;
frames here stay under it.)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import msgpack
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import LiveServer

SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
                   st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30), st.binary(max_size=30))
STRUCTURE = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=5)
                         | st.dictionaries(st.one_of(st.text(max_size=8), st.integers(-5, 5)), inner, max_size=5),
                         max_leaves=40)
FIX = st.dictionaries(st.sampled_from(["lat", "lon", "ts", "accuracy", "speed", "heading", "alt", "x"]),
                      SCALAR | st.floats(-200, 200), max_size=6)
BATCH = st.fixed_dictionaries({"seq": SCALAR | st.integers(0, 10**6)},
                              optional={"fixes": st.lists(FIX, max_size=20) | STRUCTURE, "extra": SCALAR})
ODD = st.sampled_from([float("nan"), float("inf"), -1e308, "x", None])
TIME = st.one_of(st.floats(1.7e9, 1.9e9), ODD, st.sampled_from(["2026-12-01T10:00:00Z", "2026-13-01T00:00:00Z"]))
NEAR_FIX = st.fixed_dictionaries(  # fixes that are nearly right: stored, or rejected one by one
    {"lat": st.floats(-100, 100) | ODD, "lon": st.floats(-200, 200) | ODD, "ts": TIME},
    optional={"accuracy": st.floats(-10, 1e6), "speed": st.floats(-5, 500), "heading": st.floats(-400, 400)})
NEAR_BATCH = st.fixed_dictionaries({"seq": st.integers(0, 10**6), "fixes": st.lists(NEAR_FIX, max_size=30)})


def packed(value: Any) -> bytes:
    return bytes(msgpack.packb(value, use_bin_type=True))


FRAME = st.one_of(
    st.binary(max_size=4000).map(lambda b: ("bytes", b)),
    STRUCTURE.map(lambda v: ("msgpack", packed(v))),
    BATCH.map(lambda v: ("batch", packed(v))),
    NEAR_BATCH.map(lambda v: ("near batch", packed(v))),
    NEAR_BATCH.map(lambda v: ("near batch", packed(v))),
    st.builds(lambda code, data: ("ext", packed(msgpack.ExtType(code, data))), st.integers(0, 127),
              st.binary(max_size=20)),
    st.text(max_size=200).map(lambda t: ("text", t)),
)


@pytest.fixture
async def channel(live: LiveServer, http: aiohttp.ClientSession) -> Any:
    token = live.add_unit("bc-01")
    ws = await http.ws_connect(f"{live.url}/telemetry/bc-01", headers={"Authorization": f"Bearer {token}"})
    yield ws
    await ws.close()


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(frame=FRAME)
async def test_every_frame_gets_one_reply_and_the_channel_stays_open(
    channel: aiohttp.ClientWebSocketResponse, caplog: pytest.LogCaptureFixture, frame: tuple[str, Any]
) -> None:
    kind, data = frame
    if kind == "text":
        await channel.send_str(data)
    else:
        await channel.send_bytes(data)
    reply = await asyncio.wait_for(channel.receive(), 10)
    assert reply.type is aiohttp.WSMsgType.BINARY, (kind, reply)
    doc = msgpack.unpackb(reply.data, raw=False)
    assert isinstance(doc, dict) and isinstance(doc.get("ok"), bool) and "seq" in doc, doc
    if doc["ok"]:
        event("ok")
        assert isinstance(doc["accepted"], int) and isinstance(doc["rejected"], list), doc
    else:
        assert isinstance(doc["error"]["code"], str) and isinstance(doc["error"]["message"], str), doc
        event(f"{kind}: {doc['error']['code']}")
    assert not channel.closed
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, [f"{r.name}: {r.getMessage()}" for r in loud]

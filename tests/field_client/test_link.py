"""The unit against a stand-in Socket.IO server: its credentials, positions at the configured
rate, retries after drops and refusals. (Instructions and publishing against the real server are
in tests/dispatch_server/test_delivery_processes.py and test_publish.py.)"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest
import socketio
from aiohttp import web

from field_client.config import UnitConfig
from field_client.errors import LinkError
from field_client.gps import GpsSpec
from field_client.link import UnitLink
from field_client.sources import SourceSpec
from field_client.unit import run_unit

TOKEN = "good-token"


@dataclass
class StandInServer:
    """``/unit`` namespace only: records connections and positions."""

    url: str
    sio: socketio.AsyncServer
    connects: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    refusals: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    positions: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    auth: list[Any] = field(default_factory=list)


@pytest.fixture
async def stand_in(aiohttp_server: Callable[..., Any]) -> AsyncIterator[StandInServer]:
    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)
    server = await aiohttp_server(app)
    s = StandInServer(str(server.make_url("")).rstrip("/"), sio)

    async def connect(sid: str, environ: Any, auth: Any = None) -> None:
        s.auth.append(auth)
        if not isinstance(auth, dict) or auth.get("token") != TOKEN:
            s.refusals.put_nowait(auth)
            raise socketio.exceptions.ConnectionRefusedError(
                "bad token", {"code": "unauthorized", "message": "bad token"})
        s.connects.put_nowait(sid)

    async def position(sid: str, data: Any) -> dict[str, Any]:
        s.positions.put_nowait(data)
        return {"ok": True}

    sio.on("connect", connect, namespace="/unit")
    sio.on("position", position, namespace="/unit")
    yield s
    await sio.shutdown()


def control_only(server: str, tmp_path: Path, **overrides: Any) -> UnitConfig:
    values: dict[str, Any] = dict(
        server=server, unit_id="bc-01", token=TOKEN, video=SourceSpec("none"), audio=SourceSpec("none"),
        gps=GpsSpec(), applied_log=tmp_path / "applied.jsonl", position_interval_s=0.05,
        backoff_base_s=0.05, backoff_cap_s=0.2, connect_timeout_s=5, ack_timeout_s=5,
    )
    values.update(overrides)
    return UnitConfig(**values)


@pytest.mark.timeout(60)
async def test_unit_sends_its_credentials_and_comes_back_after_the_link_drops(
    stand_in: StandInServer, tmp_path: Path
) -> None:
    stop = asyncio.Event()
    cfg = control_only(stand_in.url, tmp_path)
    unit = asyncio.create_task(run_unit(cfg, stop, rng=random.Random(1)))
    try:
        async with asyncio.timeout(30):
            sid = await stand_in.connects.get()
            assert stand_in.auth[0] == {"token": TOKEN, "unit_id": "bc-01"}
            await stand_in.sio.disconnect(sid, namespace="/unit")  # the link drops
            await stand_in.connects.get()  # the unit comes back by itself
            assert stand_in.auth[1] == {"token": TOKEN, "unit_id": "bc-01"}
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await unit


@pytest.mark.timeout(60)
async def test_positions_are_sent_periodically_in_the_documented_shape(
    stand_in: StandInServer, tmp_path: Path
) -> None:
    stop = asyncio.Event()
    unit = asyncio.create_task(run_unit(control_only(stand_in.url, tmp_path, gps=GpsSpec(lat=48.0, lon=11.0)), stop))
    try:
        async with asyncio.timeout(30):
            fixes = [await stand_in.positions.get() for _ in range(3)]
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await unit
    for fix in fixes:
        assert set(fix) == {"lat", "lon", "alt", "accuracy", "speed", "heading", "ts"}
        assert abs(fix["lat"] - 48.0) < 0.01 and abs(fix["lon"] - 11.0) < 0.01
        assert fix["ts"].endswith("Z")
    assert len({(f["lat"], f["lon"]) for f in fixes}) == 3  # the unit is moving


@pytest.mark.timeout(60)
async def test_refused_unit_keeps_retrying_with_backoff_until_stopped(
    stand_in: StandInServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stop = asyncio.Event()
    cfg = control_only(stand_in.url, tmp_path, token="wrong")
    caplog.set_level("INFO", logger="field_client")
    unit = asyncio.create_task(run_unit(cfg, stop))
    try:
        async with asyncio.timeout(30):
            for _ in range(3):  # three refused attempts: the unit keeps coming back
                await stand_in.refusals.get()
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await unit
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("field_client")]
    assert any("unit bc-01: link: server refused the connection: unauthorized" in m for m in messages)
    assert any("unit bc-01: link: reconnecting in" in m for m in messages)
    assert messages[-1] == "unit bc-01: stopped"


def unused_url() -> str:
    """The URL of a port nothing listens on (a node that died)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.timeout(60)
async def test_unit_moves_on_to_the_next_server_when_its_node_cannot_be_reached(
    stand_in: StandInServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stop = asyncio.Event()
    dead = unused_url()
    caplog.set_level("INFO", logger="field_client")
    unit = asyncio.create_task(run_unit(control_only(dead, tmp_path, other_servers=(stand_in.url,)), stop))
    try:
        async with asyncio.timeout(30):
            await stand_in.connects.get()
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await unit
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("field_client")]
    order = [f"unit bc-01: connecting to {dead}", f"unit bc-01: {dead} unreachable; trying {stand_in.url} next",
             f"unit bc-01: connecting to {stand_in.url}"]
    assert [m for m in messages if m in order][:3] == order


@pytest.mark.timeout(60)
async def test_a_call_fails_as_soon_as_the_link_drops_not_after_its_timeout(stand_in: StandInServer) -> None:
    async def sync(sid: str, data: Any) -> dict[str, Any]:
        await stand_in.sio.disconnect(sid, namespace="/unit")  # the node goes before it answers
        return {"ok": True, "instructions": []}

    stand_in.sio.on("sync", sync, namespace="/unit")
    link = UnitLink(stand_in.url, "bc-01", TOKEN, ack_timeout_s=30)
    await link.connect()
    try:
        started = time.monotonic()
        with pytest.raises(LinkError, match="link lost before 'sync' was acknowledged"):
            await link.call("sync", {"after_seq": 0})
        assert time.monotonic() - started < 10
        with pytest.raises(LinkError, match="not sent: the link is down"):
            await link.call("sync", {"after_seq": 0})
    finally:
        await link.close()

"""Back-fill after a link loss: fixes made while the unit is cut off reach the server after it
reconnects, with their original timestamps, in ``positions`` batches -- or as single ``position``
events when the server does not know batches yet.

The link is cut by a TCP proxy between unit and server that drops every connection and refuses
new ones for a while, which is what the unit sees when a field network goes away.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import aiohttp
import msgpack
import pytest
import socketio
from aiohttp import web

import field_client.unit
from field_client.config import UnitConfig
from field_client.gps import GpsSpec, PositionSource, open_position_source
from field_client.gps_buffer import Batch, FixBuffer
from field_client.sources import SourceSpec
from field_client.unit import FieldUnit
from geo.fix import Fix

TOKEN = "good-token"


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``; :meth:`cut` aborts every connection and
    refuses new ones (accepted, then aborted at once) until :meth:`restore`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.down = False
        self.forwarded = 0  # connections passed on to the target
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if self.down:
                client_w.transport.abort()
                return
            try:
                server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError:
                client_w.transport.abort()
                return
            self.forwarded += 1
            pair = (client_w.transport, server_w.transport)
            self._transports.update(pair)
            try:
                await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))
            finally:
                for t in pair:
                    t.abort()
                    self._transports.discard(t)
        finally:
            self._handlers.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()  # one side gone: the connection is over for both

    def cut(self) -> None:
        self.down = True
        for t in list(self._transports):
            t.abort()

    def restore(self) -> None:
        self.down = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        handlers = list(self._handlers)
        for h in handlers:
            h.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


@pytest.fixture
async def proxy_to() -> AsyncIterator[Callable[[str], Any]]:
    proxies: list[TcpProxy] = []

    async def make(url: str) -> tuple[TcpProxy, str]:
        proxy = TcpProxy(int(url.rsplit(":", 1)[1]))
        proxies.append(proxy)
        return proxy, await proxy.start()

    yield make
    for p in proxies:
        await p.close()


class RecordingSource:
    """Wraps the unit's real position source and keeps every fix it produced."""

    def __init__(self, inner: PositionSource) -> None:
        self.inner = inner
        self.fixes: list[Fix] = []

    def position(self, now: float) -> Fix | None:
        p = self.inner.position(now)
        if p is not None:
            self.fixes.append(p)
        return p


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[RecordingSource]:
    """The sources of units started in this test, recording what they generate."""
    sources: list[RecordingSource] = []

    def opener(spec: GpsSpec, rng: random.Random | None = None) -> PositionSource | None:
        inner = open_position_source(spec, rng)
        assert inner is not None
        sources.append(RecordingSource(inner))
        return sources[-1]

    monkeypatch.setattr(field_client.unit, "open_position_source", opener)
    return sources


def fix_time(p: Fix) -> float:
    """The ``ts`` the unit sends for a fix: whole milliseconds."""
    return round(p.ts, 3)


def control_only(server: str, unit_id: str, token: str, **overrides: Any) -> UnitConfig:
    values: dict[str, Any] = dict(
        server=server, unit_id=unit_id, token=token, video=SourceSpec("none"), audio=SourceSpec("none"),
        gps=GpsSpec(lat=48.1, lon=11.5), position_interval_s=0.1, backoff_base_s=0.1, backoff_cap_s=0.5,
        connect_timeout_s=5, ack_timeout_s=5,
    )
    values.update(overrides)
    return UnitConfig(**values)


@pytest.fixture
def buffer_changed(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Set whenever the fix buffer of a unit started in this test takes in or releases fixes."""
    changed = asyncio.Event()

    class WatchedFixBuffer(FixBuffer):
        def append(self, fix: Fix) -> None:
            super().append(fix)
            changed.set()

        def release(self, batch: Batch) -> None:
            super().release(batch)
            changed.set()

    monkeypatch.setattr(field_client.unit, "FixBuffer", WatchedFixBuffer)
    return changed


async def wait_until(predicate: Callable[[], bool], changed: asyncio.Event, timeout: float, what: str) -> None:
    """Wait until ``predicate`` holds, checking it again whenever ``changed`` is set; fail naming
    ``what`` after ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                changed.clear()
                if predicate():
                    return
                await changed.wait()
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@dataclass
class OutageRun:
    """Fixes generated before, during and after one link outage, all acknowledged by the end."""

    generated: list[float]  # ts of every fix generated up to the end of the run
    during: list[float]  # ts of the fixes generated while the link was cut
    buffered_at_restore: int


async def run_through_outage(unit: FieldUnit, source_list: list[RecordingSource], proxy: TcpProxy,
                             buffer_changed: asyncio.Event, outage_s: float, *,
                             settle_timeout: float = 30) -> OutageRun:
    """Run ``unit`` until some fixes are through, cut the link for ``outage_s``, restore it and
    wait until every fix generated so far has been answered for; then stop the unit."""
    stop = asyncio.Event()
    task = asyncio.create_task(unit.run(stop))
    try:
        await wait_until(lambda: unit.fixes is not None and unit.fixes.released >= 5, buffer_changed, 30,
                         "first fixes sent")
        assert unit.fixes is not None
        source = source_list[0]
        proxy.cut()
        cut_at = len(source.fixes)
        await asyncio.sleep(outage_s)  # the outage itself: its length is the point of the test
        restored_at = len(source.fixes)
        buffered = len(unit.fixes)
        proxy.restore()
        # Back-fill, then a few live fixes on top.
        target = unit.fixes.appended + 10
        fixes = unit.fixes
        await wait_until(lambda: fixes.released + fixes.dropped >= target, buffer_changed, settle_timeout,
                         f"{target} fixes answered for (now {fixes.released})")
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await task
    ts = [fix_time(p) for p in source.fixes]
    return OutageRun(generated=ts[:target], during=ts[cut_at:restored_at], buffered_at_restore=buffered)


# -- against stand-in servers: the client's behaviour, runnable without the real server ------------


@dataclass
class StandIn:
    """A ``/unit`` namespace that stores fixes by ``ts`` as the real server does."""

    url: str
    stored: dict[float, dict[str, Any]] = field(default_factory=dict)
    batch_sizes: list[int] = field(default_factory=list)
    singles: int = 0


def stand_in_app(s: StandIn, positions: str) -> web.Application:
    """``positions``: ``"batch"`` (handled), ``"bad_message"`` (refused as unknown) or ``"none"``
    (no handler: python-socketio then acknowledges nothing)."""
    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)

    async def connect(sid: str, environ: Any, auth: Any = None) -> None:
        if not isinstance(auth, dict) or auth.get("token") != TOKEN:
            raise socketio.exceptions.ConnectionRefusedError("bad token")

    async def position(sid: str, data: Any) -> dict[str, Any]:
        ts = dt.datetime.fromisoformat(data["ts"].replace("Z", "+00:00")).timestamp()
        s.singles += 1
        s.stored.setdefault(ts, data)
        return {"ok": True}

    async def batch(sid: str, data: Any) -> dict[str, Any]:
        if positions == "bad_message":
            return {"ok": False, "error": {"code": "bad_message", "message": "unknown event"}}
        fixes = msgpack.unpackb(data)
        s.batch_sizes.append(len(fixes))
        new = [f for f in fixes if f["ts"] not in s.stored]
        for f in new:
            s.stored[f["ts"]] = f
        return {"ok": True, "accepted": len(new), "duplicates": len(fixes) - len(new), "rejected": []}

    sio.on("connect", connect, namespace="/unit")
    sio.on("position", position, namespace="/unit")
    if positions != "none":
        sio.on("positions", batch, namespace="/unit")
    app.on_shutdown.append(lambda _: sio.shutdown())
    return app


@pytest.fixture
def stand_in(aiohttp_server: Callable[..., Any]) -> Callable[[str], Any]:
    async def make(positions: str) -> StandIn:
        s = StandIn("")
        server = await aiohttp_server(stand_in_app(s, positions))
        s.url = str(server.make_url("")).rstrip("/")
        return s

    return make


@pytest.mark.timeout(60)
async def test_fixes_made_while_cut_off_arrive_in_batches_with_their_timestamps(
    stand_in: Callable[[str], Any], proxy_to: Callable[[str], Any], recorded: list[RecordingSource],
    buffer_changed: asyncio.Event, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="field_client")
    server: StandIn = await stand_in("batch")
    proxy, url = await proxy_to(server.url)
    unit = FieldUnit(control_only(url, "bc-01", TOKEN, position_interval_s=0.05, position_batch_max=10))
    run = await run_through_outage(unit, recorded, proxy, buffer_changed, outage_s=2.0)
    assert proxy.forwarded >= 2  # the unit did reconnect through the proxy
    assert run.buffered_at_restore >= 20
    assert set(run.generated) <= set(server.stored)  # every fix, none lost
    assert set(server.stored) <= {fix_time(p) for p in recorded[0].fixes}  # no invented times
    assert max(server.batch_sizes) == 10 and server.singles == 0  # back-fill in full batches
    # The stand-in has no telemetry channel (404): positions went over the Socket.IO link.
    assert "the server has no telemetry channel (404); sending positions over the Socket.IO link" in caplog.text


@pytest.mark.timeout(60)
@pytest.mark.parametrize("positions", ["bad_message", "none"])
async def test_server_without_batches_gets_every_fix_as_single_events(
    stand_in: Callable[[str], Any], proxy_to: Callable[[str], Any], recorded: list[RecordingSource],
    buffer_changed: asyncio.Event, positions: str,
) -> None:
    server: StandIn = await stand_in(positions)
    proxy, url = await proxy_to(server.url)
    unit = FieldUnit(control_only(url, "bc-01", TOKEN, position_interval_s=0.05, ack_timeout_s=0.5))
    run = await run_through_outage(unit, recorded, proxy, buffer_changed, outage_s=1.0)
    assert proxy.forwarded >= 2
    assert set(run.generated) <= set(server.stored)
    assert server.batch_sizes == [] and server.singles >= len(run.generated)


# -- the acceptance test against the real server ---------------------------------------------------


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


async def track_times(live: Any, unit_id: str, token: str, since: float, until: float) -> list[float]:
    """``ts`` of every fix of the unit's stored track in ``[since, until)``."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{live.url}/api/units/{unit_id}/track",
                            params={"from": iso(since), "to": iso(until)},
                            headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200, await r.text()
            doc = await r.json(content_type=None)
    assert doc["type"] == "FeatureCollection"
    return [f["properties"]["ts"] for f in doc["features"] if f["properties"].get("kind") == "fix"]


@pytest.mark.timeout(120)
async def test_unit_cut_off_for_20_s_has_99_percent_of_its_fixes_stored_with_original_times(
    live: Any, proxy_to: Callable[[str], Any], recorded: list[RecordingSource], buffer_changed: asyncio.Event,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="field_client")
    token = live.add_unit("bc-07")
    live.add_user("op", "operator")
    op = await live.login("op")
    proxy, url = await proxy_to(live.url)
    started = time.time()
    unit = FieldUnit(control_only(url, "bc-07", token))  # 10 fixes a second on a simulated route
    run = await run_through_outage(unit, recorded, proxy, buffer_changed, outage_s=20.0)
    assert proxy.forwarded >= 2
    assert len(run.during) >= 150 and run.buffered_at_restore >= 150  # held while cut off

    stored = await track_times(live, "bc-07", op, started - 1, time.time() + 1)
    assert len(stored) == len(set(stored))
    assert set(stored) <= {fix_time(p) for p in recorded[0].fixes}  # original times, none made up
    kept = set(stored)
    assert len(kept & set(run.generated)) >= 0.99 * len(run.generated)
    assert len(kept & set(run.during)) >= 0.99 * len(run.during)
    assert "sending single 'position' events" not in caplog.text  # it was back-filled in batches
    # ... over the telemetry channel, reopened after the outage
    assert caplog.text.count("telemetry channel open") >= 2
    admin = await live.admin()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{live.url}/api/health", headers={"Authorization": f"Bearer {admin}"}) as r:
            telemetry = (await r.json())["telemetry"]
    assert telemetry["batches"] >= 5 and telemetry["bad_frames"] == 0

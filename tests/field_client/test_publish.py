"""The field client against the real dispatch server: it publishes (sio and WHIP, VP8 and H.264),
ends its session cleanly on stop or SIGINT, and gets in after ``409 already_publishing``."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from dispatch_server.appkeys import LIVE
from field_client.config import UnitConfig
from field_client.gps import GpsSpec
from field_client.unit import FieldUnit, run_unit
from tests.support.processes import Process
from tests.support.server import add_unit, add_user, login, write_config

from .console_watch import ConsoleWatch, api_units, not_publishing, publishing


@pytest.fixture
async def watch() -> AsyncIterator[ConsoleWatch]:
    w = ConsoleWatch()
    yield w
    await w.close()


def unit_config(url: str, unit_id: str, token: str, **overrides: Any) -> UnitConfig:
    values: dict[str, Any] = dict(server=url, unit_id=unit_id, token=token, width=320, height=240,
                                  backoff_base_s=0.1, backoff_cap_s=0.5, gps=GpsSpec(lat=48.1, lon=11.5))
    values.update(overrides)
    return UnitConfig(**values)


class LogCounter(logging.Handler):
    """Counts log lines containing ``text``; :meth:`reach` waits until there are ``n``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.count = 0
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.count += 1
            self.changed.set()

    async def reach(self, n: int) -> None:
        while self.count < n:
            self.changed.clear()
            await self.changed.wait()


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("signalling", "codec"), [("sio", "vp8"), ("whip", "h264")])
async def test_unit_publishes_and_unpublishes_on_stop(
    live: Any, watch: ConsoleWatch, signalling: str, codec: str
) -> None:
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    op = await live.login("op")
    await watch.connect(live.url, op)
    stop = asyncio.Event()
    cfg = unit_config(live.url, "bc-01", token, signalling=signalling, codec=codec)
    task = asyncio.create_task(run_unit(cfg, stop))
    try:
        unit = await watch.until("bc-01", lambda u: publishing(u) and u["position"] is not None)
        assert unit["video_codec"] == codec.upper() and unit["audio_codec"] == "opus"
        assert abs(unit["position"]["lat"] - 48.1) < 0.01
        assert (await api_units(live.url, op))["bc-01"]["publishing"] is True
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await task
    await watch.until("bc-01", not_publishing)


@pytest.mark.timeout(90)
async def test_unit_publishes_again_when_the_server_ends_its_session(
    live: Any, watch: ConsoleWatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="field_client")
    token = live.add_unit("bc-01")
    connected = LogCounter("unit bc-01: peer connection connected")
    logging.getLogger("field_client").addHandler(connected)
    stop = asyncio.Event()
    unit = FieldUnit(unit_config(live.url, "bc-01", token))
    task = asyncio.create_task(unit.run(stop))
    try:
        async with asyncio.timeout(15):  # well below the 20 s ICE watchdog: the close is seen
            await connected.reach(1)
            live_service = live.app[LIVE]
            await live_service.unpublish("bc-01", live_service.publishers["bc-01"].id)
            await connected.reach(2)  # peer connection closed by the server: published again
        assert unit.publish_count == 2
    finally:
        logging.getLogger("field_client").removeHandler(connected)
        stop.set()
        async with asyncio.timeout(15):
            await task


@pytest.mark.timeout(120)
async def test_second_publisher_gets_in_after_409_once_the_first_stops(
    live: Any, watch: ConsoleWatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="field_client.unit")  # the refusals are INFO lines
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    await watch.connect(live.url, await live.login("op"))
    first_stop, second_stop = asyncio.Event(), asyncio.Event()
    first = FieldUnit(unit_config(live.url, "bc-01", token))
    second = FieldUnit(unit_config(live.url, "bc-01", token, signalling="whip"))
    refusals = LogCounter("whip: server says another publisher holds the unit")
    logging.getLogger("field_client.unit").addHandler(refusals)
    first_task = asyncio.create_task(first.run(first_stop))
    second_task: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(60):
            await first.publishing.wait()
            await watch.until("bc-01", publishing)
            second_task = asyncio.create_task(second.run(second_stop))
            await refusals.reach(3)  # refused while the first one is live, retried with backoff
            assert second.publish_count == 0
            first_stop.set()
            await first_task
            await second.publishing.wait()
            await watch.until("bc-01", publishing)
    finally:
        logging.getLogger("field_client.unit").removeHandler(refusals)
        first_stop.set()
        second_stop.set()
        async with asyncio.timeout(15):
            await asyncio.gather(first_task, *([second_task] if second_task else []))


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("sig", "signalling", "ended"), [
    (signal.SIGINT, "sio", "unit bc-07: unpublished session"),
    (signal.SIGTERM, "whip", "unit bc-07: WHIP session"),
])
async def test_field_client_process_publishes_and_exits_0_on_signal(
    tmp_path: Path, watch: ConsoleWatch, sig: int, signalling: str, ended: str
) -> None:
    config = write_config(tmp_path / "config.toml", tmp_path / "data")
    token = await asyncio.to_thread(add_unit, config, "bc-07", "vehicle")
    await asyncio.to_thread(add_user, config, "op", "operator", "operator-pass-1")
    server = await Process.start("-m", "dispatch_server", "--config", str(config), "serve")
    client: Process | None = None
    try:
        url = (await server.line_with("listening on ", timeout=60)).split("listening on ", 1)[1].strip()
        op = await login(url, "op", "operator-pass-1")
        await watch.connect(url, op)
        client = await Process.start("-m", "field_client", "--server", url, "--unit", "bc-07", "--token", token,
                                     "--signalling", signalling, "--size", "320x240",
                                     "--applied-log", str(tmp_path / "applied.jsonl"))
        try:
            unit = await watch.until("bc-07", publishing, timeout=60)
        except TimeoutError:
            raise AssertionError("the unit never showed as publishing\n--- field-client:\n" + client.output()
                                 + "\n--- server:\n" + server.output()) from None
        assert unit["video_codec"] == "VP8"
        assert (await api_units(url, op))["bc-07"]["publishing"] is True
        await client.line_with("unit bc-07: publishing")

        assert await client.stop(sig) == 0, client.output()
        await client.line_with(ended)
        await client.line_with("unit bc-07: stopped")
        await watch.until("bc-07", not_publishing)
    finally:
        if client is not None:
            await client.stop(signal.SIGKILL)
        await server.stop()

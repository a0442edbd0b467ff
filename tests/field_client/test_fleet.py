"""A fleet in one process: every unit publishes, and they all share one pre-encoded loop."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any, AsyncIterator

import pytest

from field_client.config import UnitConfig
from field_client.fleet import run_fleet
from field_client.loop_cache import LoopCache

from .console_watch import ConsoleWatch, not_publishing, publishing


@pytest.fixture
async def watch() -> AsyncIterator[ConsoleWatch]:
    w = ConsoleWatch()
    yield w
    await w.close()


@pytest.mark.timeout(120)
async def test_fleet_units_publish_on_one_shared_loop(live: Any, watch: ConsoleWatch) -> None:
    ids = [f"sim-{i}" for i in range(1, 5)]
    units = [(unit_id, live.add_unit(unit_id, "vehicle")) for unit_id in ids]
    live.add_user("op", "operator")
    await watch.connect(live.url, await live.login("op"))
    template = UnitConfig(server=live.url, unit_id="template", token="unused", width=320, height=240,
                          backoff_base_s=0.1, backoff_cap_s=0.5)
    loops = LoopCache()
    stop = asyncio.Event()
    # As the server's demo mode does it: plain configs, no shared label set by the caller.
    configs = [dataclasses.replace(template, unit_id=u, token=t) for u, t in units]
    fleet = asyncio.create_task(run_fleet(configs, stop, loops=loops, rng=random.Random(2)))
    try:
        for unit_id in ids:
            await watch.until(unit_id, publishing, timeout=60)
        assert len(loops._video) == 1 and len(loops._audio) == 1
    finally:
        stop.set()
        async with asyncio.timeout(20):
            await fleet
    for unit_id in ids:
        await watch.until(unit_id, not_publishing)

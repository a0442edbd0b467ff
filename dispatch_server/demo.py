"""Simulated units run inside the server process, so a newcomer sees live video at once.

Each start gives the demo units fresh tokens (only hashes are stored, so the old ones cannot be
reused) and runs them with :mod:`field_client` against this server's own address.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from field_client.config import UnitConfig
from field_client.fleet import run_fleet

from .appkeys import STORE
from .auth import hash_token, new_token
from .config import Settings

logger = logging.getLogger(__name__)


def register_demo_units(app: web.Application, settings: Settings) -> list[tuple[str, str]]:
    """Create (or re-token) ``demo.simulated_units`` units; return ``(unit_id, token)`` pairs."""
    store = app[STORE]
    units = []
    for i in range(1, settings.demo.simulated_units + 1):
        unit_id = f"{settings.demo.unit_prefix}-{i:02d}"
        token = new_token()
        if not store.set_unit_token(unit_id, hash_token(token)):
            store.add_unit(unit_id, "vehicle" if i % 3 == 0 else "body", hash_token(token), time.time())
        units.append((unit_id, token))
    return units


async def run_demo_units(app: web.Application, settings: Settings, url: str, stop: asyncio.Event) -> None:
    units = await asyncio.to_thread(register_demo_units, app, settings)
    logger.info("demo: running %d simulated units: %s", len(units), ", ".join(u for u, _ in units))
    configs = [UnitConfig(server=url, unit_id=unit_id, token=token) for unit_id, token in units]
    await run_fleet(configs, stop, stagger_s=0.3)

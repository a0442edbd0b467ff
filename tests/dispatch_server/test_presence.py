"""Presence in Redis (dispatch_server/stores/presence.py, redis_pool.py) against a real redis-server."""

from __future__ import annotations

import asyncio

from dispatch_server.stores.presence import RedisPresence
from dispatch_server.stores.redis_pool import MAX_CONNECTIONS


async def test_a_thousand_units_changing_at_once_all_land(redis_url: str) -> None:
    """Ten times more concurrent updates than the pool has connections (1,000 units of a node
    disconnecting at once): each waits for a connection instead of failing, and every unit's
    presence is written."""
    presence = RedisPresence(redis_url, "node-a")
    await presence.start()
    try:
        units = [f"u{i:04d}" for i in range(10 * MAX_CONNECTIONS)]
        await asyncio.gather(*(presence.update(u, connected=True) for u in units))
        assert sorted(u for u, p in (await presence.all()).items() if p.connected) == units
        await asyncio.gather(*(presence.update(u, connected=False) for u in units))
        got = await presence.some(units)
        assert sorted(got) == units and not any(p.connected for p in got.values())
    finally:
        await presence.close()

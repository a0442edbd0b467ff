"""The Redis client of the node's stores (presence, the position index): at most
:data:`MAX_CONNECTIONS` connections, and a caller that finds them all busy waits for one.

redis-py's default asyncio pool (8.x) allows 100 connections and raises ``MaxConnectionsError``
to the 101st concurrent command instead of waiting: when 1,000 units of a node disconnect at once
(a network blip, the end of a benchmark), most of their disconnect handlers failed and their
presence stayed "connected" (docs/benchmarks.md, "Outbox on both engines (#18)").
"""

from __future__ import annotations

from typing import Any

MAX_CONNECTIONS = 100
WAIT_S = 30.0  # longest wait for a free connection before the command fails


def redis_client(url: str) -> Any:
    """A ``redis.asyncio.Redis`` for ``url`` (strings decoded) on a blocking pool it owns:
    ``aclose()`` closes the pool too."""
    import redis.asyncio as aioredis

    pool = aioredis.BlockingConnectionPool.from_url(url, decode_responses=True, max_connections=MAX_CONNECTIONS,
                                                    timeout=WAIT_S)
    return aioredis.Redis.from_pool(pool)

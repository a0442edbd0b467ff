"""Where each unit is right now (connected, publishing, codecs, position, which node), behind a
small interface with an in-memory and a Redis implementation chosen in ``create_app``.

With Redis every node writes its own units into one hash and refreshes a heartbeat key; entries
of a node whose heartbeat expired read as offline, so a crashed node does not leave ghosts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

from .redis_pool import redis_client

logger = logging.getLogger(__name__)

HASH_KEY = "dispatch:presence"
NODE_KEY = "dispatch:node:{}"
NODE_URL_KEY = "dispatch:node-url:{}"  # the base URL other nodes reach the node at (pulling a stream)
HEARTBEAT_S = 2.0
NODE_TTL_S = 8


@dataclass(frozen=True)
class Presence:
    unit_id: str
    connected: bool = False  # has a live /unit Socket.IO connection
    publishing: bool = False
    last_seen: float | None = None  # epoch seconds
    video_codec: str | None = None
    audio_codec: str | None = None
    position: dict[str, Any] | None = None
    node: str = ""
    # A publish on another node that was never ended there (that node died): the node, and the
    # unit's last sign of life there (epoch seconds). The next publish records a fail-over gap.
    lost_publish_node: str = ""
    lost_publish_at: float | None = None

    @property
    def online(self) -> bool:
        return self.connected or self.publishing

    def changed(self, **changes: Any) -> Presence:
        """A copy with ``changes`` (``dataclasses.replace``, without its per-call introspection:
        this runs for every GPS fix)."""
        return Presence(**{**self.__dict__, **changes})


def _on_dead_node(p: Presence) -> Presence:
    """How a unit last written by a node that is gone reads: offline, and a publish there lost."""
    if p.publishing:
        return p.changed(connected=False, publishing=False, lost_publish_node=p.node, lost_publish_at=p.last_seen)
    return p.changed(connected=False)


class PresenceStore(Protocol):
    node: str  # the node this store writes as

    async def start(self) -> None: ...
    async def update(self, unit_id: str, **changes: Any) -> Presence: ...
    async def get(self, unit_id: str) -> Presence | None: ...
    async def all(self) -> dict[str, Presence]: ...
    async def some(self, unit_ids: Iterable[str]) -> dict[str, Presence]: ...
    async def node_url(self, node: str) -> str | None: ...
    async def close(self) -> None: ...


class MemoryPresence:
    """Single-node presence."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._items: dict[str, Presence] = {}

    async def start(self) -> None:
        return None

    async def update(self, unit_id: str, **changes: Any) -> Presence:
        cur = self._items.get(unit_id) or Presence(unit_id)
        new = cur.changed(node=self.node, **changes)
        self._items[unit_id] = new
        return new

    async def get(self, unit_id: str) -> Presence | None:
        return self._items.get(unit_id)

    async def all(self) -> dict[str, Presence]:
        return dict(self._items)

    async def some(self, unit_ids: Iterable[str]) -> dict[str, Presence]:
        """The presence of those of ``unit_ids`` that have one."""
        return {u: self._items[u] for u in unit_ids if u in self._items}

    async def node_url(self, node: str) -> str | None:
        """A single node has no other node to reach."""
        return None

    async def close(self) -> None:
        self._items.clear()


class RedisPresence:
    """Presence shared by every node through one Redis hash."""

    def __init__(self, url: str, node: str, advertise_url: str = "") -> None:
        self.node = node
        self._advertise_url = advertise_url
        self._redis = redis_client(url)
        self._heartbeat: asyncio.Task[None] | None = None

    async def _announce(self) -> None:
        """The heartbeat, and the URL other nodes reach this one at, both expiring together."""
        await self._redis.set(NODE_KEY.format(self.node), str(time.time()), ex=NODE_TTL_S)
        if self._advertise_url:
            await self._redis.set(NODE_URL_KEY.format(self.node), self._advertise_url, ex=NODE_TTL_S)

    async def start(self) -> None:
        await self._announce()
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat(), name="presence-heartbeat")

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self._announce()
            except Exception as exc:  # Redis down: keep serving, presence goes stale elsewhere
                logger.warning("node %s: presence heartbeat failed: %s", self.node, exc)

    @staticmethod
    def _decode(raw: str | bytes) -> Presence:
        return Presence(**json.loads(raw))

    async def update(self, unit_id: str, **changes: Any) -> Presence:
        raw = await self._redis.hget(HASH_KEY, unit_id)
        cur = self._decode(raw) if raw else Presence(unit_id)
        new = cur.changed(node=self.node, **changes)
        await self._redis.hset(HASH_KEY, unit_id, json.dumps(dataclasses.asdict(new)))
        return new

    async def get(self, unit_id: str) -> Presence | None:
        raw = await self._redis.hget(HASH_KEY, unit_id)
        if not raw:
            return None
        return (await self._alive({unit_id: self._decode(raw)}))[unit_id]

    async def all(self) -> dict[str, Presence]:
        raw = await self._redis.hgetall(HASH_KEY)
        return await self._alive({str(k): self._decode(v) for k, v in raw.items()})

    async def some(self, unit_ids: Iterable[str]) -> dict[str, Presence]:
        """The presence of those of ``unit_ids`` that have one: one ``HMGET``, and only their
        entries decoded (:meth:`all` reads and decodes every unit's, about 15 ms of CPU at 1,000)."""
        wanted = list(dict.fromkeys(unit_ids))
        if not wanted:
            return {}
        raw = await self._redis.hmget(HASH_KEY, wanted)
        return await self._alive({u: self._decode(v) for u, v in zip(wanted, raw, strict=True) if v})

    async def node_url(self, node: str) -> str | None:
        """The base URL ``node`` advertises, while it is alive."""
        raw = await self._redis.get(NODE_URL_KEY.format(node))
        return raw.decode() if isinstance(raw, bytes) else raw

    async def _alive(self, items: dict[str, Presence]) -> dict[str, Presence]:
        nodes = sorted({p.node for p in items.values() if p.node})
        alive = set()
        if nodes:
            beats = await self._redis.mget([NODE_KEY.format(n) for n in nodes])
            alive = {n for n, b in zip(nodes, beats, strict=True) if b is not None}
        return {k: p if p.node in alive else _on_dead_node(p) for k, p in items.items()}

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
            try:
                await self._redis.delete(NODE_KEY.format(self.node), NODE_URL_KEY.format(self.node))
            except Exception:
                pass
        await self._redis.aclose()

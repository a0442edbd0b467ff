"""Instructions from the command room, applied exactly once (the unit side of docs/api.md).

On every connect, and whenever the server says ``instructions_pending``, the inbox takes what
is new (from the push itself when it follows on from the last ``seq``, else by ``sync``), asks
the server to mark it ``received`` and applies only the ids the server confirms as delivered
(an instruction whose TTL ran out first is never applied). Applying means: log it, append it
to the applied log (fsynced, so a restart never applies it twice), then hand it to the
:class:`~field_client.desk.OrderDesk`: the unit carries out machine orders and reports the
outcome, the officer answers human ones. Nothing is answered on the officer's behalf.

A delivered order the unit had already applied before a restart, but not answered, comes back
from ``sync`` (the server still holds it as ``delivered``): it goes to the desk again, without
counting as applied twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .applied_log import AppliedLog
from .desk import OrderDesk
from .errors import LinkError
from .link import UnitLink
from .orders import Order

logger = logging.getLogger(__name__)

class InstructionInbox:
    def __init__(self, unit_id: str, applied: AppliedLog | None, desk: OrderDesk) -> None:
        self.unit_id = unit_id
        self._applied = applied
        self._desk = desk
        self._seen: set[str] = set()
        self.last_seq = applied.max_seq if applied is not None else 0
        self.applied_count = 0
        self._lock = asyncio.Lock()
        # The first sync of this process starts from 0: orders applied before a restart but not
        # yet answered are still open on the server and come back to the desk.
        self._from_start = True

    async def pull(self, link: UnitLink) -> None:
        """Fetch and apply everything after ``last_seq`` (on connect and after a gap)."""
        async with self._lock:
            await self._pull(link)

    async def on_pending(self, link: UnitLink, data: Any) -> None:
        async with self._lock:
            items = data.get("instructions") if isinstance(data, dict) else None
            try:
                if items and isinstance(items, list) and items[0].get("seq") == self.last_seq + 1:
                    await self._process(link, items)
                else:
                    await self._pull(link)
            except LinkError as exc:
                logger.warning("unit %s: instructions not processed now (%s); retried on the next sync",
                               self.unit_id, exc)

    async def _pull(self, link: UnitLink) -> None:
        while True:
            got = await link.call("sync", {"after_seq": 0 if self._from_start else self.last_seq})
            self._from_start = False
            items = got.get("instructions") or []
            if not items:
                return
            before = self.last_seq
            await self._process(link, items)
            if self.last_seq == before:
                return

    async def _process(self, link: UnitLink, items: list[dict[str, Any]]) -> None:
        items = sorted(items, key=lambda i: i["seq"])
        ack = await link.call("received", {"ids": [i["id"] for i in items]})
        delivered = set(ack.get("delivered") or [])
        for item in items:
            if item["id"] in delivered:
                await self._apply(item)
            else:
                logger.info("unit %s: instruction %s expired or was cancelled before delivery; not applied",
                            self.unit_id, item["id"])
            self.last_seq = max(self.last_seq, int(item["seq"]))

    async def _apply(self, item: dict[str, Any]) -> None:
        iid, kind = item["id"], item.get("type", "?")
        if self._applied is not None:
            fresh = await self._applied.record(iid, kind, item.get("seq"))
        else:
            fresh = iid not in self._seen
            self._seen.add(iid)
        if fresh:
            self.applied_count += 1
            logger.info("unit %s: instruction %s applied (#%s %s %s%s)", self.unit_id, iid, item.get("seq"), kind,
                        item.get("priority", ""), f": {item['payload']}" if item.get("payload") else "")
        else:
            logger.info("unit %s: instruction %s was applied before; awaiting its answer again", self.unit_id, iid)
        await self._desk.arrived(Order.from_wire(item))

"""Coalescing of live updates to consoles: a broadcast to 1,000 units changes 1,000 instructions
twice within a second; operators get them as a few list events instead of 2,000 single ones."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

logger = logging.getLogger(__name__)

Flush = Callable[[list[dict[str, Any]]], Awaitable[None]]


class UpdateBatcher:
    """Collects items and hands them to ``flush`` at most every ``interval_s`` (oldest first)."""

    def __init__(self, flush: Flush, interval_s: float = 0.05, max_items: int = 500) -> None:
        self._flush = flush
        self._interval_s = interval_s
        self._max_items = max_items
        self._items: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, item: dict[str, Any]) -> None:
        self._items.append(item)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="update-batcher")

    async def _run(self) -> None:
        while self._items:
            await asyncio.sleep(self._interval_s)
            while self._items:
                batch, self._items = self._items[: self._max_items], self._items[self._max_items :]
                try:
                    await self._flush(batch)
                except Exception:
                    logger.exception("could not push %d updates to consoles", len(batch))

    async def close(self) -> None:
        """Send what is pending, then stop."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

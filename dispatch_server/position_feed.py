"""Moved units on their way to operators, coalesced into one ``unit_positions`` list at a time."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from utctime import iso_seconds

logger = logging.getLogger(__name__)

FEED_INTERVAL_S = 0.1  # the most often operators get a list of moved units
FEED_MAX_UNITS = 1000  # units per ``unit_positions`` event (about 150 bytes each)

PushPositions = Callable[[list[dict[str, Any]]], Awaitable[None]]


class PositionFeed:
    """Moved units on their way to operators: the newest position per unit, pushed as one list.

    The first position after a quiet spell goes out at once; while positions keep coming, a list
    goes out at most every ``interval_s``, so a console sees a fix at most that much later than
    it was stored, and a unit that moved several times in between is sent once. An item is
    ``{"id", "position", "last_seen", "fix_age_s", "stale"}``: the fields of the unit's
    ``unit_status`` view that a new fix changes.
    """

    def __init__(self, push: PushPositions, stale_after_s: float, interval_s: float = FEED_INTERVAL_S,
                 clock: Callable[[], float] = time.time, pushed: Callable[[float], None] | None = None) -> None:
        self._push = push
        self._pushed = pushed  # told, for each unit pushed, how long ago its fix arrived (seconds)
        self.stale_after_s = stale_after_s
        self._interval_s = interval_s
        self._clock = clock
        self._pending: dict[str, tuple[dict[str, Any], float, float]] = {}  # id -> (position, fix ts, seen)
        self._task: asyncio.Task[None] | None = None
        self._last_push = float("-inf")  # loop time
        self._closed = False

    def add(self, unit_id: str, position: dict[str, Any], fix_ts: float, seen: float) -> None:
        """Queue the unit's new position (``fix_ts`` and ``seen`` in epoch seconds); ignored once closed."""
        if self._closed:
            return
        self._pending[unit_id] = (position, fix_ts, seen)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="position-feed")

    def discard(self, unit_id: str) -> None:
        """Drop a queued position (a full ``unit_status`` is telling operators instead)."""
        self._pending.pop(unit_id, None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            wait = self._last_push + self._interval_s - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_push = loop.time()
            await self._flush()

    async def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        now = self._clock()
        items = []
        for unit_id, (position, fix_ts, seen) in pending.items():
            age = round(max(0.0, now - fix_ts), 1)
            items.append({"id": unit_id, "position": position, "last_seen": iso_seconds(seen), "fix_age_s": age,
                          "stale": age > self.stale_after_s})
        for i in range(0, len(items), FEED_MAX_UNITS):
            try:
                await self._push(items[i:i + FEED_MAX_UNITS])
                if self._pushed is not None:
                    done = self._clock()
                    for _, _, seen in list(pending.values())[i:i + FEED_MAX_UNITS]:
                        self._pushed(max(0.0, done - seen))
            except Exception as exc:  # a Redis hiccup: the next fixes bring newer positions
                logger.warning("could not push %d positions to operators: %s", len(items[i:i + FEED_MAX_UNITS]), exc)

    async def close(self) -> None:
        """Push what is queued, then stop; idempotent."""
        self._closed = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

"""The running action of every unit, asked for with every GPS fix (thousands a second)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from .actions import Action, ActionStore
from .shared_call import SharedCall

logger = logging.getLogger(__name__)


class RunningActions:
    """The running action ``(id, case number)`` of every unit in one, asked for with every fix.

    ``await running()`` answers from memory. After :meth:`invalidate` (this node changed an
    action) the next call reads the store and every caller waits for that one read, so nothing
    is linked to an action that has just ended or missed by one that has just started. When the
    map is merely older than ``ttl_s`` (an action changed on another node shows up that late),
    callers get it as it is while one background read refreshes it: thousands of fixes a second
    must not queue behind a store query, or each wait for a future of their own.
    """

    def __init__(self, actions: ActionStore, ttl_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._actions = actions
        self._ttl_s = ttl_s
        self._clock = clock
        self._map: dict[str, tuple[str, str]] | None = None
        self._at = float("-inf")
        self._dirty = True
        self._read = SharedCall(self._load)
        self._refresh: asyncio.Task[dict[str, tuple[str, str]]] | None = None

    def invalidate(self) -> None:
        self._dirty = True

    async def action_changed(self, action: Action) -> None:
        """An action listener (see :class:`ActionService`): the next call reads the store again."""
        self.invalidate()

    async def __call__(self) -> dict[str, tuple[str, str]]:
        current = self._map
        if current is None or self._dirty:
            return await self._read()
        if self._clock() - self._at > self._ttl_s and (self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.get_running_loop().create_task(self._read(), name="running-actions-refresh")
            self._refresh.add_done_callback(_log_refresh_failure)
        return current

    async def _load(self) -> dict[str, tuple[str, str]]:
        was_dirty, self._dirty = self._dirty, False  # an invalidate() during the read marks it dirty again
        try:
            running = await self._actions.list("running")
        except BaseException:
            # A failed exact read is retried by the next caller; a failed background refresh
            # leaves the map in use until the next one.
            self._dirty = self._dirty or was_dirty
            raise
        self._map = {u: (a.id, a.case_number) for a in running for u in a.units}
        self._at = self._clock()
        return self._map

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            await asyncio.gather(self._refresh, return_exceptions=True)
            self._refresh = None


def _log_refresh_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("running actions not refreshed (the previous map stays in use): %r", task.exception())

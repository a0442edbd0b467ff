"""Anonymous refusals in the evidence ledger, without letting a stranger fill it.

Every refused access to evidence is written to the ledger (who tried what, from where). A
stranger hammering download links with made-up tokens would otherwise add one permanent,
fsynced entry per request. Here the first refusal from a source in each ``window_s`` is written
at once, the rest are counted, and one ``access_denied`` entry per source and window says how
many more there were (``repeated``), from when to when, and what the last one tried. Nothing is
lost: the ledger still says that every one of them happened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from utctime import iso_millis

logger = logging.getLogger(__name__)

Record = Callable[..., Awaitable[Any]]  # archive.record(type, actor=, where=, outcome=, data=)
WINDOW_S = 60.0
MAX_SOURCES = 10_000


@dataclass
class _Window:
    start: float
    count: int = 0
    last_at: float = 0.0
    last: dict[str, Any] = field(default_factory=dict)


class DenialLedger:
    def __init__(self, record: Record, window_s: float = WINDOW_S, clock: Callable[[], float] = time.time) -> None:
        self._record = record
        self._window_s = window_s
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}  # (where, entry type)
        self._task: asyncio.Task[None] | None = None

    async def denied(self, where: str, data: dict[str, Any], entry_type: str = "access_denied") -> None:
        """A refused anonymous access from ``where`` (``http:<address>``), written as ``entry_type``."""
        now = self._clock()
        key = (where, entry_type)
        window = self._windows.get(key)
        if window is not None and now - window.start < self._window_s:
            window.count += 1
            window.last_at, window.last = now, data
            return
        if window is not None:
            await self._summarise(key, window)
        if len(self._windows) >= MAX_SOURCES:
            await self.flush(older_than=0.0)
        self._windows[key] = _Window(start=now)
        await self._record(entry_type, actor="anonymous", where=where, outcome="denied", data=data)

    async def _summarise(self, key: tuple[str, str], window: _Window) -> None:
        if window.count:
            where, entry_type = key
            await self._record(entry_type, actor="anonymous", where=where, outcome="denied",
                               data={**window.last, "repeated": window.count, "since": iso_millis(window.start),
                                     "until": iso_millis(window.last_at)})

    async def flush(self, older_than: float | None = None) -> None:
        """Write the summary of every window (only of those older than ``older_than`` seconds)."""
        now = self._clock()
        for key, window in list(self._windows.items()):
            if older_than is None or now - window.start >= older_than:
                await self._summarise(key, window)
                self._windows.pop(key, None)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._window_s / 2)
            try:
                await self.flush(older_than=self._window_s)
            except Exception:
                logger.exception("could not write the summary of refused accesses; kept for the next try")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="denial-ledger")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()

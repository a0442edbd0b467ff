"""Fixes on their way to the server: a bounded FIFO that outlives the link, and its sender.

The unit samples its position source on a timer whether or not the link is up and appends every
fix to a :class:`FixBuffer`. While a link is up, a :class:`PositionUploader` drains the buffer
oldest first, one request in flight at a time:

* as ``positions`` batches of at most ``batch_max`` fixes (docs/api.md, "Geo"). A fix leaves
  the buffer only once the server has acknowledged it; after a timeout or a lost link the same
  fixes are sent again (the server ignores duplicates by unit and fix time), so back-fill after
  a reconnect needs nothing special: the backlog goes out first with its original timestamps,
  then live fixes follow.
* as single ``position`` events when the server does not know ``positions`` yet: the first
  batch on a link answered with ``bad_message`` or with no acknowledgement at all (what
  python-socketio does for an unknown event) switches that link to single events for the same
  fixes, still in order. Every new link asks again, so an upgraded server is noticed.

Memory: a buffered fix costs ~330 bytes, ~28 MB for the default 86,400 (24 h at 1 Hz). When the
buffer is full the oldest fix is dropped and counted; a warning says so at most once a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from itertools import islice
from typing import Any, Callable, Protocol, Sequence

from geo.fix import Fix

from .errors import LinkError
from .link import ACK_TIMEOUT

logger = logging.getLogger(__name__)

DEFAULT_CAPACITY = 86_400  # 24 h at 1 Hz
DEFAULT_BATCH_MAX = 100
DROP_LOG_INTERVAL_S = 60.0
BAD_MESSAGE = "bad_message"  # the server's code for an event of a shape it does not take


@dataclass(frozen=True)
class Batch:
    """The oldest fixes of a buffer, ``first_seq`` being the sequence number of ``fixes[0]``."""

    fixes: tuple[Fix, ...]
    first_seq: int

    @property
    def end_seq(self) -> int:
        return self.first_seq + len(self.fixes)

    def __len__(self) -> int:
        return len(self.fixes)


class FixBuffer:
    """A FIFO of at most ``capacity`` fixes; appending to a full one drops the oldest.

    Every appended fix gets the next sequence number, so :meth:`release` removes exactly the
    fixes of a batch even when the oldest were dropped while it was in flight. ``clock`` is
    monotonic seconds, for the once-a-minute drop warning.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *, unit_id: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        if capacity < 1:
            raise ValueError(f"position buffer capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.unit_id = unit_id
        self._clock = clock
        self._fixes: deque[Fix] = deque()
        self._first_seq = 0  # sequence number of self._fixes[0]
        self._added = asyncio.Event()
        self.appended = 0  # fixes ever appended
        self.released = 0  # fixes removed after the server answered (accepted or refused)
        self.dropped = 0  # oldest fixes pushed out of a full buffer, never sent
        self._dropped_unlogged = 0
        self._last_drop_log: float | None = None

    def __len__(self) -> int:
        return len(self._fixes)

    def append(self, fix: Fix) -> None:
        if len(self._fixes) >= self.capacity:
            self._fixes.popleft()
            self._first_seq += 1
            self.dropped += 1
            self._dropped_unlogged += 1
            self._log_drops()
        self._fixes.append(fix)
        self.appended += 1
        self._added.set()

    def _log_drops(self) -> None:
        now = self._clock()
        if self._last_drop_log is not None and now - self._last_drop_log < DROP_LOG_INTERVAL_S:
            return
        logger.warning("unit %s: position buffer full (%d fixes): dropped the %d oldest (%d in all)",
                       self.unit_id, self.capacity, self._dropped_unlogged, self.dropped)
        self._last_drop_log = now
        self._dropped_unlogged = 0

    def oldest(self, n: int) -> Batch:
        """Up to ``n`` of the oldest fixes, oldest first, left in the buffer."""
        return Batch(tuple(islice(self._fixes, n)), self._first_seq)

    def release(self, batch: Batch) -> None:
        """Remove the fixes of ``batch`` that are still here (the server has answered for them)."""
        n = min(batch.end_seq - self._first_seq, len(self._fixes))
        for _ in range(n):
            self._fixes.popleft()
        if n > 0:
            self._first_seq += n
            self.released += n

    async def wait_for_fixes(self) -> None:
        """Return once the buffer holds at least one fix."""
        while not self._fixes:
            self._added.clear()
            await self._added.wait()


class PositionLink(Protocol):
    """What the uploader needs of :class:`field_client.link.UnitLink`."""

    async def send_positions(self, batch: Sequence[Fix]) -> dict[str, Any]:
        """The ``{"ok": true, ...}`` ack; :class:`LinkError` with the server's code otherwise
        (``ack_timeout`` when no acknowledgement came)."""

    async def send_position(self, position: Fix) -> bool:
        """True when accepted, False when refused; :class:`LinkError` when unacknowledged."""


class PositionUploader:
    """Drains a :class:`FixBuffer` over one link at a time, keeping one request in flight.

    ``retry_s`` is the pause after a failure that is neither a timeout nor a refusal (a transport
    error while the link goes down), so that such a failure cannot spin.
    """

    def __init__(self, buffer: FixBuffer, *, batch_max: int = DEFAULT_BATCH_MAX, retry_s: float = 1.0) -> None:
        if batch_max < 1:
            raise ValueError(f"position batch size must be at least 1, got {batch_max}")
        self.buffer = buffer
        self.batch_max = batch_max
        self.retry_s = retry_s
        # None until the current link's server answers a batch; False: single events on this link.
        self.batch_supported: bool | None = None
        self.refused = 0  # fixes the server will never accept (rejected or a bad batch)

    def _log(self, level: int, message: str, *args: Any) -> None:
        logger.log(level, "unit %s: " + message, self.buffer.unit_id, *args)

    async def drain(self, link: PositionLink) -> None:
        """Send buffered fixes over ``link`` until cancelled (the owner cancels on link loss)."""
        self.batch_supported = None
        while True:
            await self.buffer.wait_for_fixes()
            if self.batch_supported is False:
                await self._send_single(link)
            else:
                await self._send_batch(link)

    async def _send_batch(self, link: PositionLink) -> None:
        batch = self.buffer.oldest(self.batch_max)
        try:
            ack = await link.send_positions(batch.fixes)
        except LinkError as exc:
            if exc.code in (BAD_MESSAGE, ACK_TIMEOUT) and self.batch_supported is None:
                self.batch_supported = False
                self._log(logging.INFO, "server does not take 'positions' batches (%s); "
                          "sending single 'position' events on this link", exc.code)
            elif exc.code == BAD_MESSAGE:
                self.refused += len(batch)
                self.buffer.release(batch)
                self._log(logging.WARNING, "dropped a batch of %d fixes the server calls malformed: %s",
                          len(batch), exc)
            elif exc.code == ACK_TIMEOUT:
                self._log(logging.INFO, "batch of %d fixes not acknowledged; sending again", len(batch))
            else:
                self._log(logging.INFO, "batch of %d fixes not sent: %s", len(batch), exc)
                await asyncio.sleep(self.retry_s)
            return
        self.batch_supported = True
        self.buffer.release(batch)
        rejected = ack.get("rejected")
        if isinstance(rejected, list) and rejected:
            self.refused += len(rejected)
            self._log(logging.WARNING, "server rejected %d of %d fixes, e.g. %.200r",
                      len(rejected), len(batch), rejected[0])

    async def _send_single(self, link: PositionLink) -> None:
        batch = self.buffer.oldest(1)
        try:
            accepted = await link.send_position(batch.fixes[0])
        except LinkError as exc:
            self._log(logging.DEBUG, "position not acknowledged: %s", exc)
            if exc.code != ACK_TIMEOUT:
                await asyncio.sleep(self.retry_s)
            return
        if not accepted:  # refused (send_position logged why): it never will be accepted
            self.refused += 1
        self.buffer.release(batch)

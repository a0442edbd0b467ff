"""Capped exponential backoff with full jitter, and waiting that an abort event cuts short."""

from __future__ import annotations

import asyncio
import math
import random


class Backoff:
    """Delay before retry ``n`` (0-based) is uniform in ``[0, min(cap_s, base_s * 2**n)]``.

    Full jitter spreads a fleet that lost its link at the same moment over the whole window
    instead of having every unit retry in lockstep.
    """

    def __init__(self, base_s: float = 0.5, cap_s: float = 10.0, rng: random.Random | None = None) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError(f"backoff needs 0 < base_s <= cap_s, got base_s={base_s} cap_s={cap_s}")
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the delay before retry ``attempt``, in seconds."""
        if attempt >= 64:  # 2**64 * base is past any cap; avoid building huge floats
            return self.cap_s
        return min(self.cap_s, math.ldexp(self.base_s, attempt))  # base_s * 2**attempt

    def next_delay(self) -> float:
        """The delay for the next retry, in seconds; each call moves one attempt further."""
        delay = self._rng.uniform(0.0, self.ceiling(self.attempt))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Start again from ``base_s`` (after a connection that was established)."""
        self.attempt = 0


async def wait_or_stop(stop: asyncio.Event, delay_s: float) -> bool:
    """Sleep ``delay_s`` seconds unless ``stop`` is set first; True when ``stop`` is set."""
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, delay_s))
    except TimeoutError:
        return False
    return True

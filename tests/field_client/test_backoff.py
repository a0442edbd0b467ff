"""Reconnect backoff: exponential, capped, fully jittered, and cut short by the stop event."""

from __future__ import annotations

import asyncio
import random

import pytest

from field_client.backoff import Backoff, wait_or_stop


def test_ceiling_doubles_from_base_to_cap() -> None:
    backoff = Backoff(0.5, 10.0)
    assert [backoff.ceiling(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.ceiling(10_000) == 10.0


def test_delays_are_full_jitter_below_the_ceiling() -> None:
    backoff = Backoff(0.5, 10.0, random.Random(1))
    for attempt in range(12):
        ceiling = backoff.ceiling(attempt)
        delay = backoff.next_delay()
        assert 0.0 <= delay <= ceiling
    assert backoff.attempt == 12


def test_jitter_spreads_delays_over_the_window() -> None:
    rng = random.Random(42)
    delays = []
    for _ in range(400):
        backoff = Backoff(0.5, 10.0, rng)
        backoff.attempt = 6  # at the cap
        delays.append(backoff.next_delay())
    assert max(delays) <= 10.0
    assert min(delays) < 1.5 and max(delays) > 8.5  # whole window used, not a fixed value
    assert 4.0 < sum(delays) / len(delays) < 6.0  # uniform: mean near cap / 2


def test_reset_starts_again_from_base() -> None:
    backoff = Backoff(0.5, 10.0, random.Random(3))
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay() <= 0.5


def test_invalid_bounds_are_rejected() -> None:
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0)
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


@pytest.mark.timeout(10)
async def test_wait_returns_early_when_stop_is_set() -> None:
    stop = asyncio.Event()
    clock = asyncio.get_running_loop().time
    started = clock()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    assert await wait_or_stop(stop, 30.0) is True
    assert clock() - started < 5.0


@pytest.mark.timeout(10)
async def test_wait_times_out_without_stop() -> None:
    assert await wait_or_stop(asyncio.Event(), 0.01) is False
    stop = asyncio.Event()
    stop.set()
    assert await wait_or_stop(stop, 30.0) is True

"""Waiting in tests for state that has no event to wait on (the server's own dictionaries)."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Callable


async def until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.02) -> float:
    """Poll ``condition`` (a function, or a coroutine function: one query) until it holds; seconds it
    took. Fails naming ``what`` after ``timeout``."""
    start = time.monotonic()
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(interval)

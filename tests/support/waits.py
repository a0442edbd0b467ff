"""Waiting in tests for state that has no event to wait on (the server's own dictionaries)."""

from __future__ import annotations

import asyncio
import time
from typing import Callable


async def until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.02) -> float:
    """Poll ``condition`` until it holds; seconds it took. Fails naming ``what`` after ``timeout``."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(interval)

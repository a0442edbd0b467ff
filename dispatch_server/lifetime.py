"""Cleanup contexts made from a start and a close: how ``create_app`` ties a part's life to the app."""

from __future__ import annotations

import inspect
import logging
import time
from typing import AsyncIterator, Callable

from aiohttp import web

logger = logging.getLogger(__name__)
SLOW_CLOSE_S = 0.2  # a close that takes longer is logged: a stop must fit in server.shutdown_grace_s

Step = Callable[[], object]  # a start or close: plain, or returning an awaitable
CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def lifetime(close: Step, start: Step | None = None) -> CleanupCtx:
    """A cleanup context that runs ``start`` (if any) at startup and ``close`` at cleanup."""

    async def run(step: Step) -> None:
        result = step()
        if inspect.isawaitable(result):
            await result

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if start is not None:
            await run(start)
        yield
        t0 = time.monotonic()
        await run(close)
        took = time.monotonic() - t0
        if took > SLOW_CLOSE_S:
            logger.info("closing %s took %.2f s", getattr(close, "__qualname__", close), took)

    return ctx

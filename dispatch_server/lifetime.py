"""Cleanup contexts made from a start and a close: how ``create_app`` ties a part's life to the app."""

from __future__ import annotations

import inspect
from typing import AsyncIterator, Callable

from aiohttp import web

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
        await run(close)

    return ctx

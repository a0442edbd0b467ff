"""Single-flight calls: concurrent callers of the same lookup share one call in flight."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Generic, TypeVar

T = TypeVar("T")


class SharedCall(Generic[T]):
    """``await shared()`` calls ``fn()``, unless a call is in flight: then it waits for that one.

    For lookups that usually answer from a cache without suspending (then this costs one future)
    but sometimes go to the store: without it, every event arriving during that query (hundreds a
    second with thousands of units) would start a query of its own and queue behind the others.
    """

    def __init__(self, fn: Callable[[], Awaitable[T]]) -> None:
        self._fn = fn
        self._inflight: asyncio.Future[T] | None = None

    async def __call__(self) -> T:
        while (inflight := self._inflight) is not None:
            try:
                return await asyncio.shield(inflight)
            except asyncio.CancelledError:
                if not inflight.cancelled():
                    raise  # this caller was cancelled
                # the caller that made the call was cancelled: make another
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._inflight = fut
        try:
            value = await self._fn()
        except Exception as exc:
            fut.set_exception(exc)
            fut.exception()  # marked retrieved: the waiters, if any, raise it too
            raise
        except BaseException:
            fut.cancel()
            raise
        finally:
            self._inflight = None
        fut.set_result(value)
        return value

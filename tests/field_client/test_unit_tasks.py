"""Task ownership helpers of the unit: cancellation that sticks, setup abandoned on stop."""

from __future__ import annotations

import asyncio

import pytest

from field_client.unit import Stopped, cancel_and_wait, until_stopped, wait_first


@pytest.mark.timeout(10)
async def test_cancel_and_wait_ends_a_task_that_swallows_one_cancellation() -> None:
    started, swallowed = asyncio.Event(), asyncio.Event()

    async def stubborn() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()  # what Python 3.11's wait_for does when a result arrives at once
        await asyncio.Event().wait()

    task = asyncio.create_task(stubborn())
    await started.wait()
    await cancel_and_wait(task)
    assert swallowed.is_set() and task.cancelled()
    await cancel_and_wait(None)


@pytest.mark.timeout(10)
async def test_until_stopped_returns_the_result_or_abandons_the_setup() -> None:
    stop = asyncio.Event()

    async def quick() -> int:
        return 7

    assert await until_stopped(stop, quick()) == 7

    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    attempt = asyncio.create_task(until_stopped(stop, slow()))
    await started.wait()
    stop.set()
    with pytest.raises(Stopped):
        await attempt
    assert cancelled.is_set()


@pytest.mark.timeout(10)
async def test_until_stopped_passes_setup_errors_on() -> None:
    async def broken() -> None:
        raise RuntimeError("no route to host")

    with pytest.raises(RuntimeError, match="no route"):
        await until_stopped(asyncio.Event(), broken())


@pytest.mark.timeout(10)
async def test_wait_first_returns_on_any_event_and_leaves_no_task() -> None:
    a, b = asyncio.Event(), asyncio.Event()
    before = len(asyncio.all_tasks())
    asyncio.get_running_loop().call_soon(b.set)
    await wait_first(a, b)
    assert len(asyncio.all_tasks()) == before

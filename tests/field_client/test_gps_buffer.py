"""The GPS buffer and its uploader: bounded with counted drops, batches oldest first, a fix leaves
only when the server answered for it, one request in flight, single events for an older server."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Sequence

import msgpack
import pytest

from field_client.config import UnitConfig
from field_client.errors import LinkError
from field_client.gps_buffer import FixBuffer, PositionUploader
from field_client.link import ACK_TIMEOUT, positions_payload
from geo.fix import Fix

T0 = 1_700_000_000.0


def fix(i: int) -> Fix:
    return Fix(lat=48.0 + i * 1e-5, lon=11.0, ts=T0 + i, accuracy=5.0)


def ts_of(fixes: Sequence[Fix]) -> list[float]:
    return [p.ts - T0 for p in fixes]


def filled(n: int, capacity: int = 1000) -> FixBuffer:
    buffer = FixBuffer(capacity, unit_id="bc-01")
    for i in range(n):
        buffer.append(fix(i))
    return buffer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_full_buffer_drops_the_oldest_and_warns_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    buffer = FixBuffer(3, unit_id="bc-01", clock=clock)
    for i in range(6):
        buffer.append(fix(i))
    assert ts_of(buffer.oldest(10).fixes) == [3, 4, 5]
    assert (len(buffer), buffer.dropped, buffer.appended) == (3, 3, 6)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["unit bc-01: position buffer full (3 fixes): dropped the 1 oldest (1 in all)"]

    clock.now = 59.0
    buffer.append(fix(6))
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    clock.now = 61.0
    buffer.append(fix(7))
    assert caplog.records[-1].getMessage() == (
        "unit bc-01: position buffer full (3 fixes): dropped the 4 oldest (5 in all)")


def test_capacity_and_batch_size_are_checked() -> None:
    with pytest.raises(ValueError, match="capacity"):
        FixBuffer(0)
    with pytest.raises(ValueError, match="position_batch_max must be 1..500"):
        UnitConfig(server="http://127.0.0.1:1", unit_id="bc-01", token="t", position_batch_max=501)
    with pytest.raises(ValueError, match="position_buffer_size"):
        UnitConfig(server="http://127.0.0.1:1", unit_id="bc-01", token="t", position_buffer_size=0)


def test_batches_are_the_oldest_fixes_in_order_and_stay_until_released() -> None:
    buffer = filled(250)
    first = buffer.oldest(100)
    assert ts_of(first.fixes) == list(range(100))
    assert ts_of(buffer.oldest(100).fixes) == list(range(100))  # peeking removes nothing
    buffer.release(first)
    assert (len(buffer), buffer.released) == (150, 100)
    assert ts_of(buffer.oldest(100).fixes) == list(range(100, 200))
    buffer.release(buffer.oldest(100))
    last = buffer.oldest(100)
    assert ts_of(last.fixes) == list(range(200, 250))
    buffer.release(last)
    buffer.release(last)  # a second answer for the same batch removes nothing more
    assert len(buffer) == 0 and buffer.released == 250
    assert buffer.oldest(100).fixes == ()


def test_release_removes_only_the_batch_when_the_oldest_were_dropped_in_flight() -> None:
    buffer = filled(5, capacity=5)
    in_flight = buffer.oldest(3)  # fixes 0, 1, 2
    buffer.append(fix(5))
    buffer.append(fix(6))  # full: 0 and 1 dropped while the batch was out
    buffer.release(in_flight)
    assert ts_of(buffer.oldest(10).fixes) == [3, 4, 5, 6]
    assert (buffer.dropped, buffer.released) == (2, 1)


def test_positions_payload_is_msgpack_of_fix_records_with_epoch_seconds() -> None:
    data = msgpack.unpackb(positions_payload([fix(0), Fix(lat=1.0, lon=2.0, ts=T0 + 0.25)]))
    assert data == [{"lat": 48.0, "lon": 11.0, "ts": T0, "accuracy": 5.0}, {"lat": 1.0, "lon": 2.0, "ts": T0 + 0.25}]
    assert isinstance(data[0]["ts"], float)


# -- the uploader against a scripted link ---------------------------------------------------------


@dataclass
class Call:
    """One request of the uploader; the test answers it."""

    event: str
    fixes: list[Fix]
    answer: asyncio.Future[Any]
    # Set once the uploader has taken the answer; it acts on it before its task yields again.
    taken: asyncio.Event = field(default_factory=asyncio.Event)

    def ok(self, **extra: Any) -> None:
        self.answer.set_result({"ok": True, "accepted": len(self.fixes), "duplicates": 0, "rejected": [], **extra})

    def fail(self, code: str) -> None:
        self.answer.set_exception(LinkError(f"{self.event}: {code}", code))


@dataclass
class ScriptedLink:
    calls: asyncio.Queue[Call] = field(default_factory=asyncio.Queue)
    in_flight: int = 0
    max_in_flight: int = 0
    current: Call | None = None

    async def _request(self, event: str, fixes: list[Fix]) -> Any:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        call = self.current = Call(event, fixes, asyncio.get_running_loop().create_future())
        self.calls.put_nowait(call)
        try:
            return await call.answer
        finally:
            self.in_flight -= 1
            call.taken.set()

    async def send_positions(self, batch: Sequence[Fix]) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("positions", list(batch))
        return result

    async def send_position(self, position: Fix) -> bool:
        result: dict[str, Any] = await self._request("position", [position])
        return result["ok"] is True

    async def next(self) -> Call:
        async with asyncio.timeout(5):
            return await self.calls.get()


class Draining:
    """``uploader.drain(link)`` as a task, cancelled (a lost link) by :meth:`lose`."""

    def __init__(self, uploader: PositionUploader, link: ScriptedLink) -> None:
        self.link = link
        self.task = asyncio.create_task(uploader.drain(link))

    async def lose(self) -> None:
        """Drop the link; an answer already given is acted on first, one in flight is lost."""
        current = self.link.current
        if current is not None and current.answer.done():
            await current.taken.wait()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def link() -> AsyncIterator[ScriptedLink]:
    yield ScriptedLink()


async def test_acknowledged_batches_leave_the_buffer_oldest_first_one_at_a_time(link: ScriptedLink) -> None:
    buffer = filled(250)
    uploader = PositionUploader(buffer, batch_max=100)
    drain = Draining(uploader, link)
    try:
        for expected in (range(0, 100), range(100, 200), range(200, 250)):
            call = await link.next()
            assert call.event == "positions" and ts_of(call.fixes) == list(expected)
            call.ok()
        buffer.append(fix(250))  # a live fix after the back-fill
        call = await link.next()
        assert ts_of(call.fixes) == [250]
        call.ok()
    finally:
        await drain.lose()
    assert len(buffer) == 0 and buffer.released == 251
    assert link.max_in_flight == 1 and uploader.batch_supported is True


async def test_unacknowledged_batch_is_kept_and_sent_again_also_after_a_lost_link(link: ScriptedLink) -> None:
    buffer = filled(1)
    uploader = PositionUploader(buffer)
    drain = Draining(uploader, link)
    try:
        (await link.next()).ok()
        buffer.append(fix(1))
        buffer.append(fix(2))
        (await link.next()).fail(ACK_TIMEOUT)
        resent = await link.next()
        assert resent.event == "positions" and ts_of(resent.fixes) == [1, 2]
        buffer.append(fix(3))
    finally:
        await drain.lose()  # the link drops with the batch in flight
    assert ts_of(buffer.oldest(10).fixes) == [1, 2, 3]
    drain = Draining(uploader, link)  # reconnected
    try:
        after = await link.next()
        assert after.event == "positions" and ts_of(after.fixes) == [1, 2, 3]
        after.ok()
    finally:
        await drain.lose()
    assert len(buffer) == 0


async def test_malformed_batch_is_dropped_once_batches_are_known_to_work(
    link: ScriptedLink, caplog: pytest.LogCaptureFixture
) -> None:
    buffer = filled(1)
    uploader = PositionUploader(buffer)
    drain = Draining(uploader, link)
    try:
        (await link.next()).ok()
        buffer.append(fix(1))
        (await link.next()).fail("bad_message")
        buffer.append(fix(2))
        nxt = await link.next()
        assert nxt.event == "positions" and ts_of(nxt.fixes) == [2]
        nxt.ok(rejected=[{"index": 0, "error": "speed out of range"}])
    finally:
        await drain.lose()
    assert len(buffer) == 0 and uploader.refused == 2
    assert "dropped a batch of 1 fixes the server calls malformed" in caplog.text
    assert "server rejected 1 of 1 fixes" in caplog.text


@pytest.mark.parametrize("failure", ["bad_message", ACK_TIMEOUT])
async def test_server_without_batches_gets_the_same_fixes_as_single_events_in_order(
    link: ScriptedLink, failure: str
) -> None:
    buffer = filled(3)
    uploader = PositionUploader(buffer)
    drain = Draining(uploader, link)
    try:
        probe = await link.next()
        assert probe.event == "positions" and ts_of(probe.fixes) == [0, 1, 2]
        probe.fail(failure)
        first = await link.next()
        assert first.event == "position" and ts_of(first.fixes) == [0]
        first.fail(ACK_TIMEOUT)  # not acknowledged: kept and sent again
        again = await link.next()
        assert ts_of(again.fixes) == [0]
        again.ok()
        refused = await link.next()
        assert ts_of(refused.fixes) == [1]
        refused.answer.set_result({"ok": False})  # refused: it never will be accepted
        last = await link.next()
        assert last.event == "position" and ts_of(last.fixes) == [2]
        last.ok()
    finally:
        await drain.lose()
    assert len(buffer) == 0 and uploader.batch_supported is False and uploader.refused == 1
    buffer.append(fix(3))
    drain = Draining(uploader, link)  # a new link asks for batches again: the server may be newer
    try:
        assert (await link.next()).event == "positions"
    finally:
        await drain.lose()
    assert link.max_in_flight == 1


async def test_transport_error_is_retried_after_a_pause(link: ScriptedLink) -> None:
    buffer = filled(1)
    uploader = PositionUploader(buffer, retry_s=0.01)
    drain = Draining(uploader, link)
    try:
        (await link.next()).answer.set_exception(LinkError("'positions' failed: not connected"))
        retry = await link.next()
        assert retry.event == "positions" and ts_of(retry.fixes) == [0]
        retry.ok()
    finally:
        await drain.lose()
    assert len(buffer) == 0

"""The server's event loop: aiortc's connect task of a peer connection whose ICE transport closed
before the task ran dies with ``InvalidStateError`` that nobody retrieves (a unit ending its
publish while it still connects). ``serve`` and every media worker install
``_closed_while_connecting``, which keeps that out of the log as a traceback; anything else still
reaches asyncio's default handler."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack

from dispatch_server.server import _closed_while_connecting


async def _connect_task_dies_on_a_closed_transport() -> None:
    """Negotiate two real peer connections, then close the offerer's ICE transport before the
    connect task that ``setRemoteDescription`` scheduled gets to run."""
    offerer, answerer = RTCPeerConnection(RTCConfiguration(iceServers=[])), RTCPeerConnection(
        RTCConfiguration(iceServers=[]))
    try:
        offerer.addTransceiver(AudioStreamTrack(), direction="sendonly")
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        before = asyncio.all_tasks()
        await offerer.setRemoteDescription(answerer.localDescription)  # schedules the connect task
        [connect] = [t for t in asyncio.all_tasks() - before
                     if "__connect" in getattr(t.get_coro(), "__qualname__", "")]
        ice = offerer.getTransceivers()[0].receiver.transport.transport
        await ice.stop()  # marks it closed before its first await: the task then finds it closed
        await asyncio.wait({connect}, timeout=30)  # it fails; nobody retrieves its exception
        assert connect.done(), "aiortc's connect task did not end"
        del connect
    finally:
        await offerer.close()
        await answerer.close()
    gc.collect()  # a failed task's exception is reported when the task is collected


@pytest.mark.parametrize("installed", [True, False])
async def test_a_connect_task_on_a_closed_transport_is_not_a_traceback(
    installed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(_closed_while_connecting if installed else None)
    caplog.set_level(logging.DEBUG)
    try:
        await _connect_task_dies_on_a_closed_transport()
    finally:
        loop.set_exception_handler(previous)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    if installed:
        assert errors == [], [r.getMessage() for r in errors]
        assert any("closed while it connected" in r.getMessage() for r in caplog.records)
    else:  # the reproduction is real: without the handler, asyncio logs it as an error
        assert any("never retrieved" in r.getMessage() for r in errors), [r.getMessage() for r in caplog.records]


def test_anything_else_still_reaches_the_default_handler(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    try:
        _closed_while_connecting(loop, {"message": "Task exception was never retrieved",
                                        "exception": RuntimeError("a real fault")})
    finally:
        loop.close()
    assert any(r.levelno >= logging.ERROR and "never retrieved" in r.getMessage() for r in caplog.records)

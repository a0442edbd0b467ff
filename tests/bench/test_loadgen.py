"""bench.loadgen's frame matching: each frame a viewer gets is the publisher frame it is, though the
loop repeats its bytes every few seconds."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection

from bench.loadgen import UnitLoad, ViewerLog
from tests.support.peers import Publisher, Viewer

LOOP = ["key", "d1", "d2"]  # the loop's frame digests: it repeats every 3 frames, one frame a second here


def send(load: UnitLoad, frames: range) -> None:
    """The publisher sends frames ``frames`` of the loop, frame n at 100 + n s."""
    for n in frames:
        load.publisher.sent.append((LOOP[n % 3], n % 3 == 0))
        load.send_times.append(100.0 + n)


async def test_a_viewer_whose_first_frame_comes_after_the_loop_came_round_is_matched_to_live_frames() -> None:
    """A viewer whose first frame (a loop-start keyframe) arrives when the loop has come round
    twice gets the frame sent last with those bytes, not the first ever sent (which made every
    frame it got look two loops late). Later frames follow on from the one matched before them,
    even when they arrive late enough for the loop to have come round again (a backlog)."""
    publisher = Publisher(RTCPeerConnection(), None, None, "video/VP8")
    viewer = Viewer(RTCPeerConnection())
    load = UnitLoad("bc-01", "", "", "", publisher)
    load.viewers.append(ViewerLog(viewer))
    log = load.viewers[0]
    try:
        send(load, range(9))
        viewer.frames += [(106.1, "key", True), (107.1, "d1", False), (108.1, "d2", False)]
        load.ingest()
        assert log.latency == pytest.approx({6: 0.1, 7: 0.1, 8: 0.1})
        assert load.window(100.0, 109.0, 1.0)["viewers"][0]["on_time"] == 3
        send(load, range(9, 14))
        viewer.frames += [(112.5, "key", True), (112.6, "d1", False)]  # frames 9 and 10, 3.5 s late
        load.ingest()
        assert {n: log.latency[n] for n in (9, 10)} == pytest.approx({9: 3.5, 10: 2.6})
        assert log.unmatched_total == 0 and log.received_total == 5
    finally:
        await publisher.close()
        await viewer.close()

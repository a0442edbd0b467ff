"""bench.loadgen's frame matching: each frame a viewer gets is the publisher frame it is, though the
loop repeats its bytes every few seconds."""

from __future__ import annotations

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from bench.loadgen import PacketReader, UnitLoad, ViewerLog, _light
from field_client.encoded_loop import EncodedAudioLoop, EncodedLoop
from media import rtp_hooks
from media.rtpwire import parse_rtp
from tests.support.peers import Publisher, Viewer, make_answering_viewer, make_publisher
from tests.support.waits import until

LOOP = ["key", "d1", "d2"]  # the loop's frame digests: it repeats every 3 frames, one frame a second here


def viewer_reader(viewer: Viewer) -> PacketReader:
    reader = getattr(viewer, "reader", None)
    assert isinstance(reader, PacketReader), "_light keeps its reader on the viewer"
    return reader


def video_pt(viewer: Viewer) -> int:
    from aiortc.sdp import SessionDescription

    description = viewer.pc.remoteDescription
    assert description is not None
    video = [m for m in SessionDescription.parse(description.sdp).media if m.kind == "video"]
    pt = video[0].rtp.codecs[0].payloadType
    assert pt is not None
    return pt


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


@pytest.mark.timeout(120)
async def test_a_light_viewer_reads_the_publishers_frames_off_its_transport_and_asks_for_a_keyframe_on_loss(
        vp8_loop: EncodedLoop, opus_loop: EncodedAudioLoop) -> None:
    """The load generators' viewer (no aiortc receiver work): a real publisher connected straight to
    it. Its frames are the publisher's, byte for byte and in order from a keyframe on, its audio
    is counted; a video packet that never comes costs that frame and sends the publisher a PLI."""
    pub = await make_publisher(vp8_loop, opus_loop, config=RTCConfiguration(iceServers=[]))
    viewer = _light(await make_answering_viewer(pub.pc.localDescription.sdp))
    reader = viewer_reader(viewer)
    dropped: list[int] = []
    video_packets = [0]

    def lossy(data: bytes) -> None:  # the 200th video packet is lost on the way
        rtp = parse_rtp(data)
        if rtp is not None and rtp.payload_type == video_pt(viewer):
            video_packets[0] += 1
            if video_packets[0] == 200:
                dropped.append(rtp.sequence_number)
                return
        reader.packet(data)

    for transport in reader.transports:  # in front of the reader's own interception
        rtp_hooks.intercept_rtp(transport, lossy)
    try:
        await pub.pc.setRemoteDescription(viewer.pc.localDescription)
        await viewer.wait_frames(90, timeout=60)
        await viewer.wait_audio(50, timeout=60)
        assert dropped, "the 200th video packet came"
        await until(lambda: pub.video is not None and pub.video.keyframe_requests > 0, 30, "a PLI at the publisher")
    finally:
        await viewer.close()
        await pub.close()
    got = [digest for _, digest, _ in viewer.frames]
    sent = [digest for digest, _ in pub.sent]
    assert viewer.frames[0][2], "the first frame is a keyframe"
    first = sent.index(got[0])
    # In order, each one a frame the publisher sent; exactly the one with the lost packet missing
    # until the next keyframe (a gap in the run, never a frame out of order).
    positions = []
    at = first
    for digest in got:
        at = sent.index(digest, at)
        positions.append(at)
    assert positions == sorted(set(positions))
    gaps = [i for i in range(1, len(positions)) if positions[i] != positions[i - 1] + 1]
    assert len(gaps) == 1, f"one stretch missing (the frame with the lost packet up to a keyframe): {positions}"
    assert viewer.frames[gaps[0]][2], "the viewer goes on at a keyframe"

"""Tracks replaying encoded loops: timestamps, keyframes on request, pacing, aiortc wiring."""

from __future__ import annotations

import asyncio
import fractions
import random
from typing import Any

import av
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from field_client.encoded_loop import AUDIO_TIME_BASE, VIDEO_TIME_BASE, AudioLoopSpec, VideoLoopSpec
from field_client.encoded_track import EncodedAudioTrack, EncodedVideoTrack, attach_keyframe_requests
from field_client.loop_cache import LoopCache
from tests.field_client.test_encoded_loop import decode

CODECS = ["vp8", "h264"]


@pytest.mark.timeout(30)
async def test_pts_increase_across_loop_wrap_and_keyframe_requests_are_honoured() -> None:
    spec = VideoLoopSpec(codec="vp8", width=160, height=120, fps=120, frame_count=5)
    loop = await LoopCache().video(spec)
    sent: list[tuple[bytes, bool]] = []
    track = EncodedVideoTrack(loop, start_index=3, on_packet=lambda data, key: sent.append((data, key)))
    packets = [await track.recv() for _ in range(12)]
    track.request_keyframe()
    packets.append(await track.recv())
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()

    pts = [p.pts for p in packets]
    assert pts == [i * 750 for i in range(13)]  # 90000 / 120 per frame, no reset at the wrap
    assert all(p.time_base == VIDEO_TIME_BASE for p in packets)
    assert [bytes(p) for p in packets] == [data for data, _ in sent]
    indices = [(3 + i) % 5 for i in range(13)]
    assert sent[0] == (loop.frames[3][1], True)  # starts with a keyframe at its offset
    assert sent[2] == (loop.frames[0][0], True)  # the loop's own keyframe at the wrap
    assert sent[1] == (loop.frames[indices[1]][0], False)
    assert sent[12] == (loop.frames[indices[12]][1], True)
    assert track.keyframe_requests == 1


@pytest.mark.timeout(30)
async def test_video_track_paces_at_the_frame_rate() -> None:
    loop = await LoopCache().video(VideoLoopSpec(width=160, height=120, frame_count=10))
    track = EncodedVideoTrack(loop, rng=random.Random(7))
    clock = asyncio.get_running_loop().time
    async with asyncio.timeout(10):
        await track.recv()
        started = clock()
        for _ in range(15):
            await track.recv()
        elapsed = clock() - started
    track.stop()
    assert 0.35 < elapsed < 1.5  # 15 frames at 30 fps = 0.5 s


@pytest.mark.timeout(30)
async def test_audio_track_sends_decodable_opus_at_20_ms() -> None:
    loop = await LoopCache().audio(AudioLoopSpec())
    track = EncodedAudioTrack(loop, start_index=0)
    clock = asyncio.get_running_loop().time
    async with asyncio.timeout(10):
        first = await track.recv()
        started = clock()
        packets = [first] + [await track.recv() for _ in range(10)]
        elapsed = clock() - started
    track.stop()
    assert [p.pts for p in packets] == [i * 960 for i in range(11)]
    assert all(p.time_base == AUDIO_TIME_BASE for p in packets)
    assert 0.1 < elapsed < 1.0  # 10 packets of 20 ms
    decoder: Any = av.CodecContext.create("opus", "r")
    samples = sum(f.samples for p in packets for f in decoder.decode(av.Packet(bytes(p))))
    assert samples == 11 * 960


@pytest.mark.timeout(60)
@pytest.mark.parametrize("codec", CODECS)
async def test_aiortc_sends_loop_without_encoding_and_forwards_pli(codec: str) -> None:
    """Two real peers: the receiver decodes our packets, and its PLI reaches the track."""
    spec = VideoLoopSpec(codec=codec, width=320, height=240, frame_count=30)
    loop = await LoopCache().video(spec)
    track = EncodedVideoTrack(loop, start_index=10)
    sender_pc, receiver_pc = RTCPeerConnection(), RTCPeerConnection()
    got_track: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    @receiver_pc.on("track")
    def on_track(remote: Any) -> None:
        if not got_track.done():
            got_track.set_result(remote)

    try:
        transceiver = sender_pc.addTransceiver(track, direction="sendonly")
        mime = "video/VP8" if codec == "vp8" else "video/H264"
        transceiver.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType in (mime, "video/rtx")]
        )
        attach_keyframe_requests(transceiver.sender, track)
        await sender_pc.setLocalDescription(await sender_pc.createOffer())
        await receiver_pc.setRemoteDescription(sender_pc.localDescription)
        await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
        await sender_pc.setRemoteDescription(receiver_pc.localDescription)

        async with asyncio.timeout(20):
            remote = await got_track
            received = [await remote.recv() for _ in range(5)]
            assert received[1].time_base == fractions.Fraction(1, 90000)
            if isinstance(received[0], av.Packet):
                # Another test installed media.passthrough: the receiver yields encoded frames.
                received = decode(codec, [bytes(p) for p in received])
            assert {(f.width, f.height) for f in received} == {(320, 240)}
            receiver = receiver_pc.getReceivers()[0]
            ssrc = receiver.getSynchronizationSources()[0].source
            await receiver._send_rtcp_pli(ssrc)
            while track.keyframe_requests == 0:
                await remote.recv()
    finally:
        await sender_pc.close()
        await receiver_pc.close()

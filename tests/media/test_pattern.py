"""Pre-encoded test-pattern loops: decodability, keyframes, timestamps, pacing, aiortc wiring."""

from __future__ import annotations

import asyncio
import fractions
import random
from typing import Any

import av
import cv2
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from media.pattern import (
    AUDIO_TIME_BASE,
    VIDEO_TIME_BASE,
    AudioLoopSpec,
    EncodedAudioLoop,
    EncodedAudioTrack,
    EncodedLoop,
    EncodedVideoTrack,
    LoopCache,
    VideoLoopSpec,
    attach_keyframe_requests,
    is_keyframe,
    render_pattern,
)

CODECS = ["vp8", "h264"]
FRAMES = 30
DECODERS = {"vp8": "vp8", "h264": "h264"}


@pytest.fixture(scope="module", params=CODECS)
def loop(request: pytest.FixtureRequest) -> EncodedLoop:
    return EncodedLoop.build(VideoLoopSpec(codec=request.param, frame_count=FRAMES))


def _rendered(spec: VideoLoopSpec) -> list[np.ndarray]:
    rng = np.random.default_rng(0)  # the same noise sequence EncodedLoop.build draws
    return [render_pattern(spec, i, rng) for i in range(spec.frame_count)]


def _decode(codec: str, payloads: list[bytes]) -> list[av.VideoFrame]:
    decoder: Any = av.CodecContext.create(DECODERS[codec], "r")
    frames: list[av.VideoFrame] = []
    for data in payloads:
        frames.extend(decoder.decode(av.Packet(data)))
    frames.extend(decoder.decode(None))
    return frames


def _psnrs(frames: list[av.VideoFrame], references: list[np.ndarray]) -> list[float]:
    return [cv2.PSNR(f.to_ndarray(format="bgr24"), ref) for f, ref in zip(frames, references)]


def test_delta_sequence_decodes_at_full_size(loop: EncodedLoop) -> None:
    spec = loop.spec
    sequence = [delta for delta, _ in loop.frames] * 2  # across one wrap
    frames = _decode(spec.codec, sequence)
    assert len(frames) == len(sequence)
    assert {(f.width, f.height) for f in frames} == {(spec.width, spec.height)}
    assert min(_psnrs(frames, _rendered(spec) * 2)) > 28


@pytest.mark.parametrize("position", [1, FRAMES // 2, FRAMES - 1])
def test_keyframe_at_any_position_decodes_with_small_drift(loop: EncodedLoop, position: int) -> None:
    spec = loop.spec
    order = list(range(position, FRAMES)) + list(range(FRAMES))
    sequence = [loop.frames[position][1]] + [loop.frames[i][0] for i in order[1:]]
    frames = _decode(spec.codec, sequence)
    assert len(frames) == len(sequence)
    assert {(f.width, f.height) for f in frames} == {(spec.width, spec.height)}
    rendered = _rendered(spec)
    psnrs = _psnrs(frames, [rendered[i] for i in order])
    assert min(psnrs) > 20  # drift after a spliced keyframe stays small
    assert min(psnrs[len(order) - FRAMES:]) > 28  # and is gone after the loop restarts


def test_keyframe_flags_match_the_bitstream(loop: EncodedLoop) -> None:
    codec = loop.spec.codec
    assert loop.delta_is_keyframe == [True] + [False] * (FRAMES - 1)
    assert all(is_keyframe(codec, key) for _, key in loop.frames)
    assert is_keyframe(codec.upper(), loop.frames[0][0])
    assert is_keyframe(f"video/{codec.upper()}", loop.frames[0][0])


def test_is_keyframe_reads_vp8_and_h264_headers() -> None:
    assert is_keyframe("vp8", bytes([0x10, 0x02, 0x00]))
    assert not is_keyframe("VP8", bytes([0x11, 0x02, 0x00]))
    assert is_keyframe("h264", b"\x00\x00\x00\x01\x67\x42\x00\x00\x00\x01\x68\x00\x00\x01\x65")
    assert is_keyframe("H264", b"\x00\x00\x01\x65\x88")
    assert not is_keyframe("h264", b"\x00\x00\x00\x01\x41\x9a\x00\x00\x01\x41")
    with pytest.raises(ValueError):
        is_keyframe("av1", b"\x00")


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


async def test_loop_cache_builds_each_spec_once() -> None:
    cache = LoopCache()
    spec = VideoLoopSpec(codec="h264", width=160, height=120, frame_count=4)
    first, second = await asyncio.gather(cache.video(spec), cache.video(spec))
    assert first is second
    assert await cache.audio() is await cache.audio()
    assert isinstance(await cache.audio(), EncodedAudioLoop)


def test_spec_rejects_unknown_codec_and_odd_sizes() -> None:
    with pytest.raises(ValueError, match="codec"):
        VideoLoopSpec(codec="mpeg2")
    with pytest.raises(ValueError, match="even"):
        VideoLoopSpec(width=641)
    assert VideoLoopSpec(codec="H.264").codec == "h264"


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
                received = _decode(codec, [bytes(p) for p in received])
            assert {(f.width, f.height) for f in received} == {(320, 240)}
            receiver = receiver_pc.getReceivers()[0]
            ssrc = receiver.getSynchronizationSources()[0].source
            await receiver._send_rtcp_pli(ssrc)
            while track.keyframe_requests == 0:
                await remote.recv()
    finally:
        await sender_pc.close()
        await receiver_pc.close()

"""Frames assembled from RTP packets are the frames that were packetised, or nothing."""

from __future__ import annotations

import fractions
import random
from typing import Any

import av
import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from field_client.encoded_loop import EncodedLoop
from media.assembly import FrameAssembler
from tests.support.peers import frame_digest

Packet = tuple[int, int, bool, bytes]  # (seq, ts, marker, payload)


def packetise(loop: EncodedLoop, codec: RTCRtpCodecParameters, count: int) -> tuple[list[bytes], list[list[Packet]]]:
    """(frames, each frame's packets) of ``count`` frames, a keyframe every 30."""
    encoder = get_encoder(codec)
    frames: list[bytes] = []
    packets: list[list[Packet]] = []
    seq = 65500  # wraps
    for i in range(count):
        delta, key = loop.frames[i % len(loop.frames)]
        data = key if i % 30 == 0 else delta
        frames.append(data)
        p = av.Packet(data)
        p.pts = i * 3000
        p.time_base = fractions.Fraction(1, 90000)
        payloads, ts = encoder.pack(p)
        packets.append([])
        for k, payload in enumerate(payloads):
            packets[-1].append((seq & 0xFFFF, (ts + 0xFFFF0000) & 0xFFFFFFFF, k == len(payloads) - 1, payload))
            seq += 1
    return frames, packets


@pytest.mark.parametrize("name", ["vp8", "h264"])
def test_reordered_packets_give_identical_frames_and_a_loss_waits_for_a_keyframe(
    name: str, request: pytest.FixtureRequest
) -> None:
    loop: EncodedLoop = request.getfixturevalue(f"{name}_loop")
    params: dict[str, Any] = {"packetization-mode": "1"} if name == "h264" else {}
    codec = RTCRtpCodecParameters(mimeType=loop.mime_type, clockRate=90000, payloadType=96, parameters=params)
    frames, per_frame = packetise(loop, codec, 75)
    # Lose the last packet of frame 40 for good: frames 40..59 are dropped, 60 is the next keyframe.
    lost = per_frame[40][-1]
    # Reorder within small windows, as a jittery network and retransmissions do; the first
    # keyframe's first packet arrives after others of it.
    rng = random.Random(7)
    rest = [p for frame in per_frame for p in frame]
    rest[0], rest[2] = rest[2], rest[0]
    shuffled: list[Packet] = []
    for i in range(0, len(rest), 4):
        chunk = rest[i : i + 4]
        rng.shuffle(chunk)
        shuffled.extend(chunk)
    got: list[tuple[int, bytes, bool]] = []
    losses: list[int] = []
    asm = FrameAssembler(codec, lambda p, k: got.append((p.pts, bytes(p), k)), lambda: losses.append(1), wait_s=0.5)
    for n, (seq, ts, marker, payload) in enumerate(shuffled):
        if seq == lost[0]:
            continue
        asm.push(seq, ts, marker, payload, now=n * 0.01)
    mime = loop.mime_type
    expected = list(range(40)) + list(range(60, 75))
    assert [frame_digest(mime, d) for _, d, _ in got] == [frame_digest(mime, frames[i]) for i in expected]
    assert [pts for pts, _, _ in got] == [i * 3000 for i in expected]
    assert got[0][2] and got[40][2] and losses == [1]


def _vp8(loop: EncodedLoop) -> RTCRtpCodecParameters:
    return RTCRtpCodecParameters(mimeType=loop.mime_type, clockRate=90000, payloadType=96)


def test_a_retransmission_late_by_most_of_the_wait_still_completes_its_frame(vp8_loop: EncodedLoop) -> None:
    """Recovery upstream takes up to four NACK round trips: the frame missing a packet waits
    (and the frames after it with it) rather than being dropped at the first gap."""
    codec = _vp8(vp8_loop)
    frames, per_frame = packetise(vp8_loop, codec, 40)
    late = per_frame[10][0]
    arrivals = [p for frame in per_frame for p in frame if p != late]
    got: list[int] = []
    losses: list[int] = []
    asm = FrameAssembler(codec, lambda p, k: got.append(int(p.pts)), lambda: losses.append(1), wait_s=1.0)
    at = 0.0
    for seq, ts, marker, payload in arrivals:
        at += 0.9 / len(arrivals)  # the late packet comes ~0.75 s after the rest of its frame
        asm.push(seq, ts, marker, payload, now=at)
    assert got == [i * 3000 for i in range(10)], "frames after the gap wait for it"
    asm.push(*late, now=at + 0.05)
    assert got == [i * 3000 for i in range(40)] and losses == [] and asm.dropped == 0


def test_a_keyframe_lost_while_waiting_for_one_asks_again(vp8_loop: EncodedLoop) -> None:
    """A frame is lost, and then the keyframe after it: each loss asks for a keyframe (one request
    after the first would otherwise have to come from someone else)."""
    codec = _vp8(vp8_loop)
    frames, per_frame = packetise(vp8_loop, codec, 100)
    lost = {per_frame[40][-1][0], per_frame[60][0][0]}
    got: list[int] = []
    asks: list[int] = []
    asm = FrameAssembler(codec, lambda p, k: got.append(int(p.pts) // 3000), lambda: asks.append(len(got)),
                         wait_s=0.5)
    packets = [p for frame in per_frame for p in frame if p[0] not in lost]
    for n, (seq, ts, marker, payload) in enumerate(packets):
        asm.push(seq, ts, marker, payload, now=n * 0.01)
    assert got == list(range(40)) + list(range(90, 100))
    assert asks == [40, 40]  # at the lost frame and at the lost keyframe


def test_a_first_keyframe_missing_a_packet_for_good_is_given_up(vp8_loop: EncodedLoop) -> None:
    """The recorder's tap came in the middle of a keyframe (a reordered packet of it passed
    before, and its retransmission is a duplicate the stream never hands on): the assembler gives
    up on that keyframe after ``wait_s`` and records from the next one, instead of waiting for
    the missing packet for ever (a whole lossy run was once recorded as nothing)."""
    codec = _vp8(vp8_loop)
    frames, per_frame = packetise(vp8_loop, codec, 40)
    assert len(per_frame[0]) >= 3
    missing = per_frame[0][1][0]
    got: list[str] = []
    asks: list[int] = []
    mime = vp8_loop.mime_type
    asm = FrameAssembler(codec, lambda p, k: got.append(frame_digest(mime, bytes(p))), lambda: asks.append(1),
                         wait_s=0.5)
    packets = [p for frame in per_frame for p in frame if p[0] != missing]
    for n, (seq, ts, marker, payload) in enumerate(packets):
        asm.push(seq, ts, marker, payload, now=n * 0.01)
    assert got == [frame_digest(mime, frames[i]) for i in range(30, 40)] and asks


def test_reordered_audio_is_recorded_in_order_and_a_lost_packet_is_skipped_after_a_while() -> None:
    """Audio packets overtaken on the way (80 ± 40 ms reorders most of them) are put back in order,
    not dropped as late (four in ten were, on the lossy link); one lost for good holds the rest
    back for ``audio_wait_s`` at most."""
    codec = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, payloadType=111)
    got: list[bytes] = []
    asm = FrameAssembler(codec, lambda p, k: got.append(bytes(p)), lambda: None, audio_wait_s=0.15)
    order = [65534, 0, 65535, 1, 3, 2, 4, *range(6, 20)]  # 5 is lost; wraps
    for n, seq in enumerate(order[:12]):
        asm.push(seq, seq * 960, True, b"%d" % seq, now=n * 0.02)
    assert got == [b"%d" % s for s in (65534, 65535, 0, 1, 2, 3, 4)], "6 to 10 wait for 5"
    for n, seq in enumerate(order[12:], start=12):
        asm.push(seq, seq * 960, True, b"%d" % seq, now=n * 0.02)
    expected = [65534, 65535, 0, 1, 2, 3, 4, *range(6, 20)]
    assert got == [b"%d" % s for s in expected] and asm.dropped == 1
    asm.push(5, 5 * 960, True, b"5", now=0.5)  # too late: its place in the recording is past
    assert len(got) == len(expected)
    assert asm.frames == len(expected)

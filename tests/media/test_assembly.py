"""Frames assembled from RTP packets are the frames that were packetised, or nothing; the native
assembler (media/_assembly.c) and its Python reference (media.assembly.FrameAssembler) agree on
every frame, loss, error and state, packet for packet."""

from __future__ import annotations

import fractions
import random
from typing import Any

import av
import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from field_client.encoded_loop import EncodedLoop
from media import _assembly
from media.assembly import Assembler, Emit, FrameAssembler, frame_assembler
from tests.support.peers import frame_digest

Packet = tuple[int, int, bool, bytes]  # (seq, ts, marker, payload)


@pytest.fixture(params=[True, False], ids=["native", "python"])
def native(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def assembler(codec: RTCRtpCodecParameters, emit: Emit, on_loss: Any, native: bool, **waits: float) -> Assembler:
    return frame_assembler(codec, emit, on_loss, native=native, **waits)


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
    name: str, request: pytest.FixtureRequest, native: bool
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
    asm = assembler(codec, lambda p, k: got.append((p.pts, bytes(p), k)), lambda: losses.append(1), native, wait_s=0.5)
    for n, (seq, ts, marker, payload) in enumerate(shuffled):
        if seq == lost[0]:
            continue
        asm.push(seq, ts, marker, payload, n * 0.01)
    mime = loop.mime_type
    expected = list(range(40)) + list(range(60, 75))
    assert [frame_digest(mime, d) for _, d, _ in got] == [frame_digest(mime, frames[i]) for i in expected]
    assert [pts for pts, _, _ in got] == [i * 3000 for i in expected]
    assert got[0][2] and got[40][2] and losses == [1]


def _vp8(loop: EncodedLoop) -> RTCRtpCodecParameters:
    return RTCRtpCodecParameters(mimeType=loop.mime_type, clockRate=90000, payloadType=96)


def test_a_retransmission_late_by_most_of_the_wait_still_completes_its_frame(
    vp8_loop: EncodedLoop, native: bool
) -> None:
    """Recovery upstream takes up to four NACK round trips: the frame missing a packet waits
    (and the frames after it with it) rather than being dropped at the first gap."""
    codec = _vp8(vp8_loop)
    frames, per_frame = packetise(vp8_loop, codec, 40)
    late = per_frame[10][0]
    arrivals = [p for frame in per_frame for p in frame if p != late]
    got: list[int] = []
    losses: list[int] = []
    asm = assembler(codec, lambda p, k: got.append(int(p.pts)), lambda: losses.append(1), native, wait_s=1.0)
    at = 0.0
    for seq, ts, marker, payload in arrivals:
        at += 0.9 / len(arrivals)  # the late packet comes ~0.75 s after the rest of its frame
        asm.push(seq, ts, marker, payload, at)
    assert got == [i * 3000 for i in range(10)], "frames after the gap wait for it"
    asm.push(*late, at + 0.05)
    assert got == [i * 3000 for i in range(40)] and losses == [] and asm.dropped == 0


def test_a_keyframe_lost_while_waiting_for_one_asks_again(vp8_loop: EncodedLoop, native: bool) -> None:
    """A frame is lost, and then the keyframe after it: each loss asks for a keyframe (one request
    after the first would otherwise have to come from someone else)."""
    codec = _vp8(vp8_loop)
    frames, per_frame = packetise(vp8_loop, codec, 100)
    lost = {per_frame[40][-1][0], per_frame[60][0][0]}
    got: list[int] = []
    asks: list[int] = []
    asm = assembler(codec, lambda p, k: got.append(int(p.pts) // 3000), lambda: asks.append(len(got)), native,
                    wait_s=0.5)
    packets = [p for frame in per_frame for p in frame if p[0] not in lost]
    for n, (seq, ts, marker, payload) in enumerate(packets):
        asm.push(seq, ts, marker, payload, n * 0.01)
    assert got == list(range(40)) + list(range(90, 100))
    assert asks == [40, 40]  # at the lost frame and at the lost keyframe


def test_a_first_keyframe_missing_a_packet_for_good_is_given_up(vp8_loop: EncodedLoop, native: bool) -> None:
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
    asm = assembler(codec, lambda p, k: got.append(frame_digest(mime, bytes(p))), lambda: asks.append(1), native,
                    wait_s=0.5)
    packets = [p for frame in per_frame for p in frame if p[0] != missing]
    for n, (seq, ts, marker, payload) in enumerate(packets):
        asm.push(seq, ts, marker, payload, n * 0.01)
    assert got == [frame_digest(mime, frames[i]) for i in range(30, 40)] and asks


def test_reordered_audio_is_recorded_in_order_and_a_lost_packet_is_skipped_after_a_while(native: bool) -> None:
    """Audio packets overtaken on the way (80 ± 40 ms reorders most of them) are put back in order,
    not dropped as late (four in ten were, on the lossy link); one lost for good holds the rest
    back for ``audio_wait_s`` at most."""
    codec = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, payloadType=111)
    got: list[bytes] = []
    asm = assembler(codec, lambda p, k: got.append(bytes(p)), lambda: None, native, audio_wait_s=0.15)
    order = [65534, 0, 65535, 1, 3, 2, 4, *range(6, 20)]  # 5 is lost; wraps
    for n, seq in enumerate(order[:12]):
        asm.push(seq, seq * 960, True, b"%d" % seq, n * 0.02)
    assert got == [b"%d" % s for s in (65534, 65535, 0, 1, 2, 3, 4)], "6 to 10 wait for 5"
    for n, seq in enumerate(order[12:], start=12):
        asm.push(seq, seq * 960, True, b"%d" % seq, n * 0.02)
    expected = [65534, 65535, 0, 1, 2, 3, 4, *range(6, 20)]
    assert got == [b"%d" % s for s in expected] and asm.dropped == 1
    asm.push(5, 5 * 960, True, b"5", 0.5)  # too late: its place in the recording is past
    assert len(got) == len(expected)
    assert asm.frames == len(expected)


# the native assembler against its reference ---------------------------------------------

Outcome = tuple[Any, ...]


class Twin:
    """The same packets to both assemblers; what each did, after every step."""

    def __init__(self, codec: RTCRtpCodecParameters, **waits: float) -> None:
        self.sides: list[tuple[Assembler, list[Any]]] = []
        for native in (True, False):
            log: list[Any] = []
            emit, lost = self._recorders(log)
            self.sides.append((frame_assembler(codec, emit, lost, native=native, **waits), log))
        self.steps = 0
        self.errors = 0

    @staticmethod
    def _recorders(log: list[Any]) -> tuple[Emit, Any]:
        def emit(frame: Any, keyframe: bool) -> None:
            log.append(("frame", frame.pts, bytes(frame), keyframe))

        def lost() -> None:
            log.append(("lost",))

        return emit, lost

    def _outcome(self, asm: Assembler, log: list[Any], call: Any) -> Outcome:
        try:
            call(asm)
            error = None
        except ValueError as exc:
            error = str(exc)
        return error, tuple(log), asm.frames, asm.dropped, asm.state()

    def do(self, call: Any, what: str) -> Outcome:
        native, python = (self._outcome(asm, log, call) for asm, log in self.sides)
        self.steps += 1
        assert native == python, f"step {self.steps}: {what}"
        self.errors += native[0] is not None
        return native

    def push(self, packet: Packet, now: float) -> Outcome:
        return self.do(lambda asm: asm.push(*packet, now), f"push {packet[:3]} {packet[3][:8]!r} at {now:.3f}")


def _garbage(rng: random.Random) -> bytes:
    """Payloads that are no valid VP8 or H.264 packet, or barely are."""
    return rng.choice([
        b"", b"\x80", b"\x90\x80", b"\x90\xc0\x80", b"\x90\xe0\x01", b"\x90\x80\x85",  # truncated VP8 descriptors
        b"\x00", b"\x1e\x00", b"\x1f\x01\x02", b"\x19\x00\x05",  # H.264: too short, unsupported types
        b"\x18\x00\x09\x67", b"\x18\x00", b"\x18\x00\x01\x65\x00",  # STAP-A: truncated, one short NAL
        b"\x7c\x85" + bytes(rng.randrange(40)), b"\x7c\x45" + bytes(8),  # FU-A start, end
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 30))),
    ])


def _scenario(rng: random.Random, per_frame: list[list[Packet]], audio: bool) -> list[tuple[str, Any, float]]:
    """Steps over a stream: reordering, losses for good, retransmissions late by up to ~1.5 s,
    duplicates, garbage, a jump to a new source's numbering, restarts, and time standing still
    or jumping past the waits."""
    packets = [p for frame in per_frame for p in frame]
    for k in rng.sample(range(len(packets)), len(packets) // 100):  # a frame that fails to depayload
        seq, ts, marker, payload = packets[k]
        packets[k] = (seq, ts, marker, _garbage(rng))
    arrivals: list[tuple[float, Packet]] = []
    at = 0.0
    shift = 0
    for n, (seq, ts, marker, payload) in enumerate(packets):
        at += rng.choice([0.0, 0.002, 0.01, 0.03])
        if n and rng.random() < 0.002:
            shift = rng.randrange(65536)  # a new publisher's numbering (the stream keeps it continuous; a tap may not)
        packet = ((seq + shift) & 0xFFFF, ts, marker, payload)
        roll = rng.random()
        if roll < 0.003:
            continue  # lost for good
        if roll < 0.015:
            arrivals.append((at + rng.choice([0.05, 0.2, 0.4, 0.9]), packet))  # a late retransmission
        elif roll < 0.03:
            arrivals.extend([(at, packet), (at + 0.02, packet)])  # a duplicate
        else:
            arrivals.append((at + rng.random() * 0.04, packet))  # jitter reorders
        if rng.random() < 0.004:
            arrivals.append((at, ((seq + shift + rng.randrange(-40, 40)) & 0xFFFF, ts, rng.random() < 0.5,
                                  _garbage(rng))))
    arrivals.sort(key=lambda a: a[0])
    steps: list[tuple[str, Any, float]] = [("push", p, t) for t, p in arrivals]
    for _ in range(3):
        steps.insert(rng.randrange(len(steps)), ("restart", None, 0.0))
    return steps


def _run_twin(codec: RTCRtpCodecParameters, steps: list[tuple[str, Any, float]], **waits: float) -> Twin:
    twin = Twin(codec, **waits)
    for op, packet, now in steps:
        if op == "restart":
            twin.do(lambda asm: asm.restart(), "restart")
        else:
            twin.push(packet, now)
    return twin


@pytest.mark.parametrize("name", ["vp8", "h264"])
@pytest.mark.parametrize("seed", range(6))
def test_native_assembler_agrees_with_its_reference_on_a_rough_stream(
    name: str, seed: int, request: pytest.FixtureRequest
) -> None:
    loop: EncodedLoop = request.getfixturevalue(f"{name}_loop")
    params: dict[str, Any] = {"packetization-mode": "1"} if name == "h264" else {}
    codec = RTCRtpCodecParameters(mimeType=loop.mime_type, clockRate=90000, payloadType=96, parameters=params)
    frames, per_frame = packetise(loop, codec, 240)
    twin = _run_twin(codec, _scenario(random.Random(seed), per_frame, audio=False), wait_s=0.5)
    kinds = [entry[0] for entry in twin.sides[1][1]]
    # the scenario reaches what it is for: frames, losses and errors all happened
    assert kinds.count("frame") > 20 and kinds.count("lost") >= 1 and twin.errors >= 1


def test_native_assembler_agrees_on_audio_and_other_video() -> None:
    rng = random.Random(11)
    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, payloadType=111)
    per_frame = [[(s & 0xFFFF, s * 960 & 0xFFFFFFFF, True, b"opus %d" % s)] for s in range(65000, 67000)]
    twin = _run_twin(opus, _scenario(rng, per_frame, audio=True), audio_wait_s=0.15)
    assert twin.sides[0][0].frames > 1500 and twin.sides[0][0].dropped > 10
    vp9 = RTCRtpCodecParameters(mimeType="video/VP9", clockRate=90000, payloadType=98)
    per_frame = [[((f * 3 + k) & 0xFFFF, f * 3000, k == 2, b"vp9 %d/%d" % (f, k)) for k in range(3)]
                 for f in range(600)]
    twin = _run_twin(vp9, _scenario(rng, per_frame, audio=False), wait_s=0.5)
    assert twin.sides[0][0].frames > 200 and twin.sides[0][0].dropped > 3


def test_native_assembler_agrees_past_its_limits(vp8_loop: EncodedLoop) -> None:
    """More pending packets than MAX_PENDING, both while waiting for a first keyframe (cleared)
    and behind a gap (skipped past): the table grows and empties as the dict does."""
    assert (_assembly.MAX_PENDING, _assembly.AUDIO_MAX_PENDING) == (FrameAssembler.MAX_PENDING,
                                                                   FrameAssembler.AUDIO_MAX_PENDING)
    codec = _vp8(vp8_loop)
    frames, per_frame = packetise(vp8_loop, codec, 600)
    twin = Twin(codec, wait_s=30.0)
    deltas = [p for frame in per_frame[1:30] for p in frame]
    for k in range(1100):  # no keyframe start: kept, and cleared at the limit
        seq, ts, marker, payload = deltas[k % len(deltas)]
        twin.push(((seq + 2000 + k) & 0xFFFF, ts + k, marker, payload), 0.0)
    packets = [p for frame in per_frame for p in frame]
    gap = packets[len(per_frame[0]) + 2]
    for packet in packets:
        if packet != gap:
            twin.push(packet, 1.0)  # time stands still: only the limit ends the wait
    outcome = twin.push(gap, 1.0)
    assert outcome[2] > 100 and outcome[3] >= 1


def test_native_frames_and_errors() -> None:
    frame = _assembly.Frame(b"abc", 90000)
    assert bytes(frame) is frame.data and frame.pts == 90000 and "3 bytes" in repr(frame)
    with pytest.raises(TypeError):
        _assembly.Frame("abc", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown kind"):
        _assembly.Assembler(9, ("video/x", 90000), print, print)
    with pytest.raises(TypeError, match="callable"):
        _assembly.Assembler(_assembly.KIND_VP8, ("video/vp8", 90000), None, print)  # type: ignore[arg-type]
    asm = _assembly.Assembler(_assembly.KIND_VP8, ("video/vp8", 90000), print, print)
    with pytest.raises(TypeError, match="bytes"):
        asm.push(1, 2, True, bytearray(b"\x90\x00"), 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out of range"):
        asm.push(70000, 2, True, b"\x90\x00", 0.0)
    with pytest.raises(TypeError, match="5 arguments"):
        asm.push(1, 2, True)  # type: ignore[call-arg]
    assert asm.state() == (None, None, True, ()) and asm.codec_key == ("video/vp8", 90000)


def test_native_assembler_holds_nothing_after_use(vp8_loop: EncodedLoop) -> None:
    """Payloads, frames, tables and the assembler itself (in a reference cycle through its
    emit, as the packet stream makes one) are all given back."""
    import gc
    import tracemalloc

    codec = _vp8(vp8_loop)
    frames, per_frame = packetise(vp8_loop, codec, 120)
    steps = _scenario(random.Random(3), per_frame, audio=False)

    class Owner:
        def __init__(self) -> None:
            self.asm = frame_assembler(codec, self.emit, self.lost, native=True, wait_s=0.5)
            self.got = 0

        def emit(self, frame: Any, keyframe: bool) -> None:
            self.got += len(bytes(frame))

        def lost(self) -> None:
            pass

    def once() -> None:
        owner = Owner()
        for op, packet, now in steps:
            if op == "restart":
                owner.asm.restart()
                continue
            try:
                seq, ts, marker, payload = packet
                owner.asm.push(seq, ts, marker, payload, now)
            except ValueError:
                pass
        assert owner.got

    once()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(40):
        once()
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 32_000, f"{grown} bytes held after 40 rounds"


def _payload_corpus(loops: list[EncodedLoop]) -> list[bytes]:
    """Every prefix of real VP8 and H.264 packets' first bytes, crafted descriptors and NAL units,
    and random bytes."""
    rng = random.Random(5)
    corpus: list[bytes] = [b""]
    for loop in loops:
        params: dict[str, Any] = {"packetization-mode": "1"} if "264" in loop.mime_type else {}
        codec = RTCRtpCodecParameters(mimeType=loop.mime_type, clockRate=90000, payloadType=96, parameters=params)
        for frame in packetise(loop, codec, 31)[1][::6]:
            for _, _, _, payload in frame[:3]:
                corpus.extend(payload[:k] for k in range(min(len(payload), 24)))
                corpus.append(payload)
    for b0 in range(256):
        for tail in (b"", b"\x00", b"\x80", b"\xff", b"\x01\x02", b"\x80\x80\x00", b"\xf0\x80\x01\x02\x00"):
            corpus.append(bytes([b0]) + tail)
    for t in range(32):  # STAP-A holding a NAL unit of each type, and FU-A starts of each
        corpus.append(b"\x18\x00\x02" + bytes([t, 0x11]) + b"\x00\x01\x09")
        corpus.append(b"\x18\x00\x02\x09\x00\x00\x02" + bytes([t, 0x11]))
        corpus.append(bytes([0x7C, 0x80 | t]) + b"\x01\x02")
        # Annex-B frames (is_keyframe): one NAL unit, one after an overlapping start code, one after
        # another NAL unit, and a start code with nothing after it
        corpus.append(b"\x00\x00\x00\x01" + bytes([0x60 | t, 0x11]))
        corpus.append(b"\x00\x00\x01\x00\x00\x01" + bytes([t]))
        corpus.append(b"\x00\x00\x01\x09\x10\x00\x00\x01" + bytes([t, 0x22]))
        corpus.append(bytes([t]) + b"\x00\x00\x01")
    corpus.extend(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) for _ in range(3000))
    return corpus


def test_native_codec_rules_match_media_keyframes_and_aiortc(vp8_loop: EncodedLoop, h264_loop: EncodedLoop) -> None:
    from aiortc.codecs import depayload

    from media.keyframes import is_keyframe, payload_starts_keyframe

    corpus = _payload_corpus([vp8_loop, h264_loop])
    kinds = [("video/VP8", _assembly.KIND_VP8, "VP8"), ("video/H264", _assembly.KIND_H264, "H264"),
             ("video/VP9", _assembly.KIND_VIDEO, "VP9"), ("audio/opus", _assembly.KIND_AUDIO, "opus")]
    for mime, kind, name in kinds:
        codec = RTCRtpCodecParameters(mimeType=mime, clockRate=90000, payloadType=96)
        assert codec.name == name
        for payload in corpus:
            assert _assembly.payload_starts_keyframe(kind, payload) == payload_starts_keyframe(mime, payload), \
                (mime, payload)
            assert _assembly.is_keyframe(kind, payload) == is_keyframe(mime, payload), (mime, payload)
            try:
                expected: Any = depayload(codec, payload)
            except ValueError as exc:
                expected = ("ValueError", str(exc))
            try:
                got: Any = _assembly.depayload(kind, payload)
            except ValueError as exc:
                got = ("ValueError", str(exc))
            assert got == expected, (mime, payload)
    with pytest.raises(ValueError, match="unknown kind"):
        _assembly.depayload(7, b"")


def test_native_assembler_agrees_at_the_edges_of_its_waits() -> None:
    """Times exactly at ``wait_s`` and ``audio_wait_s`` (binary fractions, so equal is equal),
    and exactly AUDIO_MAX_PENDING audio packets behind a missing one."""
    vp9 = RTCRtpCodecParameters(mimeType="video/VP9", clockRate=90000, payloadType=98)
    twin = Twin(vp9, wait_s=0.5)
    twin.push((10, 3000, True, b"a"), 0.0)
    twin.push((12, 6000, False, b"b"), 0.25)  # 11 is missing: stalled from here
    for now in (0.5, 0.75):  # 0.75 - 0.25 == wait_s: still waiting
        twin.push((13, 6000, True, b"c"), now)
    assert twin.sides[0][0].frames == 1
    twin.push((14, 9000, True, b"d"), 0.875)  # past it: 11 is given up
    assert twin.sides[0][0].frames == 3
    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, payloadType=111)
    for lost in (1, 2):
        twin = Twin(opus, audio_wait_s=0.125)
        twin.push((0, 0, True, b"0"), 0.0)
        for k in range(2, 2 + _assembly.AUDIO_MAX_PENDING + 2 - lost):  # 1 is missing
            twin.push((k, k * 960, True, b"%d" % k), 0.0)
        twin.push((40, 40 * 960, True, b"40"), 0.125)  # exactly audio_wait_s since the stall
        twin.push((41, 41 * 960, True, b"41"), 0.25)

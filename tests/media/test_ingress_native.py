"""media/_ingress.c against its reference: PublisherIngress._on_rtp, PacketStream.on_packet,
NackTracker.seen and PacketCache in Python.

Two complete publisher paths, one on the native data plane and one on the Python reference, get
the same datagrams on the same clock: rough streams of VP8 and H.264 video with RTX and Opus
audio with an audio level, reordered, duplicated, lost for a while or for good, with garbage,
unknown payload types, padding, CSRCs, header extensions, restarts of the publisher's stream and
jumps of the clock. After every datagram both must agree on everything either keeps or sends:
the route's reception counts, the stream's numbering and keyframe state, the NACK tracker, the
cache, the fanout's counters, the bytes each viewer got, the recorder's frames, the RTCP sent to
the publisher (SRTP is deterministic per key, so the same packets give the same ciphertext) and
the keyframes asked for.
"""

from __future__ import annotations

import asyncio
import random
import struct
from typing import Any

import pytest
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters

from media import _dataplane, rtp_hooks
from media.ingress import REPORT_INTERVAL_S, PublisherIngress
from media.loss import CachedPacket, NackTracker, PacketCache
from media.packets import PacketViewer
from media.relay import Fanout, RelayConfig
from media.rtpext import ExtensionPlan
from media.rtpwire import build_rtp
from tests.support.dtls_standin import Dtls

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96,
                            rtcpFeedback=[RTCRtcpFeedback(type="nack"), RTCRtcpFeedback(type="nack", parameter="pli")])
H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102,
                             rtcpFeedback=[RTCRtcpFeedback(type="nack")], parameters={"packetization-mode": "1"})
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, payloadType=111, channels=2)
RTX_PT = 97
LEVEL_ID = 1


class Side:
    """One publisher path: an ingress, its two streams, two viewers each, a recorder's tap."""

    def __init__(self, native: bool, video: RTCRtpCodecParameters, clock: list[float]) -> None:
        self.native = native
        config = RelayConfig(engine="packets", native_dataplane=native, keyframe_interval_s=0)
        self.asked: list[str] = []
        self.frames: list[tuple[str, bytes, int, bool]] = []
        self.wires: list[list[bytes]] = []
        self.fanouts: dict[str, Fanout] = {}
        self.ingress = PublisherIngress("bc-twin", 4321, 2_000_000, lambda: clock[0], native=native)
        self.dtls = Dtls("aead-aes128-gcm")

        async def requester(kind: str = "video") -> bool:
            self.asked.append(kind)
            return True

        for kind, codec in (("video", video), ("audio", OPUS)):
            fanout = Fanout("bc-twin", kind, config, lambda: clock[0])
            self.fanouts[kind] = fanout
            level = LEVEL_ID if kind == "audio" else None
            stream = fanout.attach_packets("pub", codec, requester, level)
            self.ingress.add(kind, stream, codec, [RTX_PT] if kind == "video" else [], self.dtls,  # type: ignore[arg-type]
                             audio_level_id=level)
            fanout.taps.append(self._tap(kind))
            for k in range(2):
                wire: list[bytes] = []
                # no abs-send-time: its value is the wall clock's, not this test's
                plan = ExtensionPlan("0", 1, None, LEVEL_ID if kind == "audio" else None) if k else None
                viewer = PacketViewer(stream, rtp_hooks.FunctionSend(wire.append), lambda: True, ssrc=50 + k,
                                      payload_type=codec.payloadType or 0, rtx_ssrc=60 + k, rtx_payload_type=None,
                                      plan=plan)
                stream.subscribe(viewer)
                self.wires.append(wire)

    def _tap(self, kind: str) -> Any:
        def tap(packet: Any, keyframe: bool) -> None:
            self.frames.append((kind, bytes(packet), int(packet.pts or 0), keyframe))

        return tap

    def feed(self, data: bytes) -> str | None:
        """The datagram through this side's path; the error it raised, if any."""
        try:
            if self.native:
                assert isinstance(self.ingress, _dataplane.IngressCore)
                self.ingress(data)
            else:
                self.ingress._on_rtp(data)
        except Exception as exc:  # both sides must fail alike
            return f"{type(exc).__name__}: {exc}"
        return None

    def state(self, with_cache: bool) -> dict[str, Any]:
        ing = self.ingress
        out: dict[str, Any] = {
            "ingress": (ing.last_arrival, ing._next_report, ing.reports_sent, ing.nacks_sent, ing._closed),
            "asked": list(self.asked), "frames": list(self.frames), "wires": [list(w) for w in self.wires],
            "rtcp": list(self.dtls.sent), "counters": self.dtls.counters(),
        }
        for kind, route in ing._routes.items():
            stream = route.stream
            nacks = stream.nacks
            fanout = self.fanouts[kind]
            out[kind] = {
                "route": (route.ssrc, route.base_seq, route.max_seq, route.cycles, route.received, route.nacked,
                          route.lost, route.pli_pending, route.retry is None, route.nack),
                "stream": (stream.last_seq, stream.last_ts, stream.last_at, stream._seq_off, stream._ts_off,
                           stream._keyframe_ts, stream._sps_in_band, stream._assembling, stream._fresh,
                           stream._mime, stream._h264, stream._video),
                "nacks": (dict(nacks._missing), list(nacks._lost), nacks._highest, nacks._due_at, nacks.nacked,
                          nacks.recovered, nacks.given_up, nacks.active),
                "fanout": (fanout.frames_in, fanout.keyframes_in, fanout.bytes_in, fanout.frames_out,
                           fanout.last_packet_at, fanout.keyframe_awaited),
                "viewers": sorted((v.ssrc, v.packets, v.octets, v.frames, v.waiting, v._epoch, v._next_seq, v._delta)
                                  for v in stream.viewers),
            }
            if with_cache:
                out[kind]["cache"] = [stream.cache.get(s) for s in range(65536)]
        return out

    async def close(self) -> None:
        self.ingress.close()
        for fanout in self.fanouts.values():
            await fanout.close()


def _vp8_payload(keyframe: bool, first: bool, rng: random.Random) -> bytes:
    head = bytes([0x90 if first else 0x80, 0x80, rng.randrange(0x80, 0x100), rng.randrange(256)])
    if not first:
        return head + bytes(rng.randrange(1, 300))
    return head + bytes([0x10 if keyframe else 0x11]) + bytes(rng.randrange(1, 300))


def _h264_payloads(keyframe: bool, rng: random.Random) -> list[bytes]:
    if keyframe:
        return [b"\x18\x00\x04\x67\x42\xc0\x1f\x00\x03\x68\xce\x3c",
                b"\x7c\x85" + bytes(rng.randrange(1, 300)), b"\x7c\x05" + bytes(rng.randrange(1, 300)),
                b"\x7c\x45" + bytes(rng.randrange(1, 300))]
    return [b"\x5c\x81" + bytes(rng.randrange(1, 300)), b"\x5c\x41" + bytes(rng.randrange(1, 300))]


def _with_padding(packet: bytes, pad: int) -> bytes:
    return bytes([packet[0] | 0x20]) + packet[1:] + bytes(pad - 1) + bytes([pad])


def _with_csrcs(packet: bytes, count: int) -> bytes:
    """The same packet with ``count`` CSRCs (only for packets without an extension)."""
    return bytes([packet[0] | count]) + packet[1:12] + bytes(4 * count) + packet[12:]


def _audio_ext(level: int, rng: random.Random) -> bytes:
    if rng.random() < 0.1:  # two-byte form
        body = bytes([LEVEL_ID, 1, level, 0])
        return struct.pack("!HH", 0x1000, 1) + body
    body = bytes([LEVEL_ID << 4, level]) + (bytes([0x20, 1, 2, 3]) if rng.random() < 0.3 else b"")
    body += bytes((4 - len(body) % 4) % 4)
    return struct.pack("!HH", 0xBEDE, len(body) // 4) + body


def _datagrams(video: RTCRtpCodecParameters, seed: int, frames: int) -> list[tuple[float, bytes]]:
    """(clock step before it, datagram) of a rough publisher."""
    rng = random.Random(seed)
    out: list[tuple[float, bytes]] = []
    vseq, aseq = rng.randrange(65536), rng.randrange(65536)
    vts, ats = rng.randrange(1 << 32), rng.randrange(1 << 32)
    vssrc, assrc = 0x1111, 0x2222
    rtx_seq = rng.randrange(65536)
    sent: list[bytes] = []  # video packets sent, for retransmissions
    held: list[bytes] = []  # reordered: sent a little later
    for f in range(frames):
        if rng.random() < 0.01:  # the publisher restarts its streams: new SSRCs and numbering
            vssrc, assrc = rng.randrange(1 << 32), rng.randrange(1 << 32)
            vseq, aseq = rng.randrange(65536), rng.randrange(65536)
        keyframe = f % 40 == 0 or rng.random() < 0.03
        if video is VP8:
            count = rng.randrange(1, 4)
            payloads = [_vp8_payload(keyframe, k == 0, rng) for k in range(count)]
        else:
            payloads = _h264_payloads(keyframe, rng)
            if keyframe and rng.random() < 0.3:  # the IDR's first fragment overtakes the STAP-A
                payloads[0], payloads[1] = payloads[1], payloads[0]
        for k, payload in enumerate(payloads):
            packet = build_rtp(video.payloadType or 0, k == len(payloads) - 1, vseq, vts, vssrc, payload)
            vseq = (vseq + 1) & 0xFFFF
            sent.append(packet)
            roll = rng.random()
            if roll < 0.05:
                continue  # lost (maybe retransmitted below)
            if roll < 0.1:
                held.append(packet)
                continue
            if roll < 0.12:
                packet = _with_padding(packet, rng.randrange(1, 20))
            elif roll < 0.14:
                packet = _with_csrcs(packet, rng.randrange(1, 4))
            out.append((rng.uniform(0, 0.01), packet))
            if roll > 0.98:
                out.append((0.0, packet))  # duplicated
        level = rng.randrange(128)
        audio = build_rtp(OPUS.payloadType or 0, True, aseq, ats, assrc, bytes([0x78]) + bytes(rng.randrange(10, 80)),
                          _audio_ext(level, rng) if rng.random() < 0.9 else b"")
        aseq = (aseq + 1) & 0xFFFF
        if rng.random() > 0.03:
            out.append((rng.uniform(0, 0.02), audio))
        if held and rng.random() < 0.5:
            rng.shuffle(held)
            out.extend((0.0, p) for p in held)
            held.clear()
        if sent and rng.random() < 0.15:  # an RTX retransmission of an earlier packet, late by up to ~1.5 s
            original = sent[-rng.randrange(1, min(len(sent), 120) + 1)]
            rtx = build_rtp(RTX_PT, bool(original[1] & 0x80), rtx_seq, int.from_bytes(original[4:8], "big"), 0x3333,
                            original[2:4] + original[12:])
            rtx_seq = (rtx_seq + 1) & 0xFFFF
            out.append((0.0, rtx))
        roll = rng.random()
        if roll < 0.02:
            out.append((0.0, bytes(rng.randrange(0, 30))))  # garbage
        elif roll < 0.03:
            out.append((0.0, build_rtp(RTX_PT, False, rtx_seq, 1, 0x3333, b"\x00")))  # RTX padding probe
        elif roll < 0.04:
            out.append((0.0, build_rtp(120, False, 1, 1, 0x4444, b"xyz")))  # unknown payload type
        elif roll < 0.05:
            bad = bytearray(build_rtp(video.payloadType or 0, False, vseq, vts, vssrc, b"\x10" * 20, b""))
            bad[0] |= 0x10  # says it has an extension that runs past the end
            out.append((0.0, bytes(bad) + b"\x00\x00\xff\xff"))
        elif roll < 0.06:
            out.append((rng.uniform(0.5, 2.5), audio))  # a stall: NACKs give up, reports fall due
        vts = (vts + 3000) & 0xFFFFFFFF
        ats = (ats + 960) & 0xFFFFFFFF
    return out


@pytest.mark.parametrize("video", [VP8, H264], ids=["vp8", "h264"])
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_native_ingress_keeps_and_sends_what_the_python_reference_does(
        video: RTCRtpCodecParameters, seed: int) -> None:
    clock = [1000.0]
    native, python = Side(True, video, clock), Side(False, video, clock)
    assert isinstance(native.ingress._routes["video"].stream.cache, _dataplane.PacketCache)
    assert not isinstance(python.ingress._routes["video"].stream.cache, _dataplane.PacketCache)
    try:
        datagrams = _datagrams(video, seed, 700)
        for n, (step, data) in enumerate(datagrams):
            clock[0] += step
            assert native.feed(data) == python.feed(data), n
            with_cache = n % 97 == 0 or n == len(datagrams) - 1
            assert native.state(with_cache) == python.state(with_cache), n
        a, b = native.state(False), python.state(False)
        # the scenario reached what it is for
        assert a["video"]["nacks"][4] > 0 and a["video"]["nacks"][5] > 0 and a["video"]["nacks"][6] > 0
        assert a["ingress"][2] >= 3 and len(a["frames"]) > 500 and a["video"]["fanout"][1] >= 10
        assert any(len(w) > 100 for w in a["wires"]) and a == b
    finally:
        await native.close()
        await python.close()


def test_the_native_cache_holds_and_lets_go_what_the_reference_does() -> None:
    rng = random.Random(7)
    for size, max_age in ((4, None), (512, 1.0), (16, 0.05)):
        native, python = _dataplane.PacketCache(size, max_age), PacketCache(size, max_age)
        now = 10.0
        for _ in range(5000):
            roll = rng.random()
            seq = rng.randrange(70000) if roll < 0.05 else rng.randrange(600)
            if roll < 0.6:
                now += rng.uniform(0, 0.01)
                packet = CachedPacket(seq, rng.randrange(1 << 32), rng.random() < 0.3, bytes(rng.randrange(5)))
                when = None if rng.random() < 0.1 else now
                native.put(packet, when)
                python.put(packet, when)
            elif roll < 0.995:
                assert native.get(seq) == python.get(seq)
            else:
                native.clear()
                python.clear()
        assert [native.get(s) for s in range(70000)] == [python.get(s) for s in range(70000)]
    hit = native.get(next(s for s in range(70000) if native.get(s) is not None))
    assert isinstance(hit, CachedPacket)


def test_the_native_cache_refuses_what_it_cannot_hold() -> None:
    with pytest.raises(ValueError, match="size"):
        _dataplane.PacketCache(0)
    cache = _dataplane.PacketCache(8)
    with pytest.raises(TypeError, match="CachedPacket"):
        cache.put((1, 2, False))
    with pytest.raises(ValueError, match="negative"):
        cache.put(CachedPacket(-1, 0, False, b""))
    with pytest.raises(RuntimeError, match="__init__"):
        _dataplane.PacketCache.__new__(_dataplane.PacketCache).get(1)


def test_the_native_fields_take_only_what_they_can_hold() -> None:
    nacks = NackTracker()
    assert nacks._highest is None and nacks.active and nacks._missing == {} and nacks._due_at == float("inf")
    with pytest.raises(ValueError, match="_highest"):
        nacks._highest = 0x10000
    route = _dataplane.RouteCore()
    assert route.ssrc is None and route.nack and not route.pli_pending and route.retry is None
    route.ssrc = 0xFFFFFFFF
    with pytest.raises(ValueError, match="ssrc"):
        route.ssrc = 1 << 32
    stream = _dataplane.StreamCore()
    assert stream.last_seq is None and stream.last_at is None and stream._fresh and stream._fan == ()
    with pytest.raises(TypeError, match="_mime"):
        stream._mime = None  # type: ignore[assignment]
    with pytest.raises(TypeError, match="PacketCache"):
        stream._on_packet_native(1, 1, False, b"x", 1.0)  # no cache, no tracker
    with pytest.raises(ValueError, match="sequence number"):
        stream._on_packet_native(70000, 1, False, b"x", 1.0)
    ingress = _dataplane.IngressCore()
    assert ingress.last_arrival is None and not ingress._closed
    ingress(b"\x80\x60" + bytes(10))  # no route for it: dropped
    ingress._by_pt = {96: object()}
    with pytest.raises(TypeError, match="RouteCore"):
        ingress(b"\x80\x60" + bytes(10))
    with pytest.raises(TypeError):
        ingress("not bytes")  # type: ignore[arg-type]


def test_the_constants_the_c_code_keeps_are_the_python_ones() -> None:
    assert _dataplane.NACK_MAX_GAP == NackTracker.MAX_GAP
    assert REPORT_INTERVAL_S == 1.0  # media/_ingress.c's REPORT_INTERVAL_S


async def test_a_stream_with_no_native_parts_is_refused_clearly() -> None:
    fanout = Fanout("bc-x", "video", RelayConfig(native_dataplane=True), lambda: 0.0)
    try:
        stream = fanout.stream
        stream.cache = PacketCache()  # the reference cache on the native path
        with pytest.raises(TypeError, match="native PacketStream"):
            stream.on_packet(1, 1, False, b"\x10", 0.0)
    finally:
        await fanout.close()


def _edges(video: RTCRtpCodecParameters) -> list[tuple[float, bytes]]:
    """Datagrams at the edges of each rule, on exact clock steps (multiples of 1/4 s)."""
    vpt, apt = video.payloadType or 0, OPUS.payloadType or 0
    start = b"\x10\x00" if video is VP8 else b"\x65\x88"

    def v(seq: int, step: float = 0.25, payload: bytes = b"\x00\x01\x02") -> tuple[float, bytes]:
        return step, build_rtp(vpt, True, seq, seq * 3000, 0x1111, payload)

    def a(seq: int, ext: bytes) -> tuple[float, bytes]:
        return 0.0, build_rtp(apt, True, seq, seq * 960, 0x2222, b"\x78\x01\x02", ext)

    out = [v(100, 0.0, start)]
    out += [v(s) for s in range(101, 111)]  # a receiver report falls due exactly on a step
    out.append(v(110 + 256))  # a jump of exactly NackTracker.MAX_GAP: NACKed
    out.append(v(366 + 257))  # one further: not NACKed, the missing ones forgotten
    out.append(v(623 - 400, 0.0))  # exactly LATE_LIMIT behind, never forwarded: dropped
    out.append(v(623 - 399, 0.0))  # one less: forwarded
    out.append((0.0, build_rtp(RTX_PT, False, 7, 1, 0x3333, (620).to_bytes(2, "big"))))  # RTX of no payload
    out.append((0.0, build_rtp(RTX_PT, False, 8, 1, 0x3333, (621).to_bytes(2, "big") + b"\x00")))
    reserved = struct.pack("!HH", 0xBEDE, 2) + bytes([0xF0, 0x00, LEVEL_ID << 4, 0x33]) + bytes(4)
    out.append(a(1, reserved))  # id 15 stops the parse before the level
    ends = struct.pack("!HH", 0x1000, 1) + bytes([0, LEVEL_ID, 1, 0x44])  # the level ends the block
    out.append(a(2, ends))
    short = struct.pack("!HH", 0x1000, 1) + bytes([0, 0, LEVEL_ID, 2])  # claims 2 bytes, has none
    out.append(a(3, short))
    one_short = struct.pack("!HH", 0xBEDE, 1) + bytes([0, 0, 0, LEVEL_ID << 4 | 1])  # 2 bytes, has none
    out.append(a(4, one_short))
    out.append(a(5, struct.pack("!HH", 0xBEDE, 1) + bytes([0, 0, LEVEL_ID << 4, 0x55])))  # the level ends it
    out += [v(s, 0.0) for s in range(624, 628)]  # the recorder's tap goes after the first of these
    out += [v(s, 0.0) for s in range(628, 632)]  # and is back before these: its assembler restarts
    return out


@pytest.mark.parametrize("video", [VP8, H264], ids=["vp8", "h264"])
async def test_the_native_ingress_agrees_at_the_edges_of_each_rule(video: RTCRtpCodecParameters) -> None:
    clock = [1000.0]
    native, python = Side(True, video, clock), Side(False, video, clock)
    try:
        for side in (native, python):  # asked before the first packet: sent with it
            assert not side.ingress.send_pli("video") and side.ingress._routes["video"].pli_pending
        taps = {side: list(side.fanouts["video"].taps) for side in (native, python)}
        for n, (step, data) in enumerate(_edges(video)):
            clock[0] += step
            assert native.feed(data) == python.feed(data), n
            assert native.state(True) == python.state(True), n
            for side in (native, python):
                if data[2:4] == (624).to_bytes(2, "big"):
                    side.fanouts["video"].taps.clear()
                elif data[2:4] == (627).to_bytes(2, "big"):
                    side.fanouts["video"].taps.extend(taps[side])
        assert len(native.dtls.sent) >= 3  # the PLI with the first packet, and receiver reports
        state = native.state(False)
        assert state["ingress"][2] >= 2  # receiver reports, the second exactly on time
        assert state["video"]["route"][4] == 24  # the RTX without a payload is not counted
        levels = [w[-1][12:24] for w in native.wires if w and w[-1][1] & 0x7F == OPUS.payloadType]
        assert levels, "no audio viewer got the packets"
    finally:
        await native.close()
        await python.close()


def test_the_native_cache_lets_go_exactly_at_its_age() -> None:
    for cache in (_dataplane.PacketCache(64, 1.0), PacketCache(64, 1.0)):
        cache.put(CachedPacket(1, 0, False, b"a"), 10.0)
        cache.put(CachedPacket(2, 0, False, b"b"), 11.0)  # exactly 1 s later: 1 stays
        assert cache.get(1) is not None
        cache.put(CachedPacket(3, 0, False, b"c"), 11.25)
        assert cache.get(1) is None and cache.get(2) is not None


async def test_the_native_ingress_holds_nothing_after_use() -> None:
    """Payloads, cache slots, NACK entries, routes and streams (in reference cycles, as the
    ingress, its routes and the fanouts make them) are all given back."""
    import gc
    import tracemalloc

    datagrams = _datagrams(VP8, 5, 150)

    async def once() -> None:
        clock = [1000.0]
        side = Side(True, VP8, clock)
        for step, data in datagrams:
            clock[0] += step
            side.feed(data)
        assert side.frames and side.state(False)["video"]["route"][4] > 100
        await side.close()

    await once()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(8):
        await once()
    # One turn of the loop (no timed wait): the callbacks the closes scheduled run and let go of
    # the last round's objects.
    await asyncio.sleep(0)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 64_000, f"{grown} bytes held after 8 rounds"

"""The packet engine end to end: aiortc publisher → real server ([media] engine = "packets") →
aiortc viewers, with packets watched (and dropped on purpose) on the peers' own DTLS transports;
and a viewer's NACKs answered within their limits, on a real fanout's stream with a clock of our own."""

from __future__ import annotations

import asyncio
import functools
import statistics
import time
from typing import Any, Callable

import aiohttp
import pytest
from aiortc import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_RTPFB_NACK,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    is_rtcp,
    unpack_remb_fci,
)
from aiortc.sdp import SessionDescription

from dispatch_server.appkeys import LIVE
from field_client.encoded_loop import EncodedAudioLoop, EncodedLoop
from media import rtp_hooks
from media.loss import RTX_BUDGET_SHARE, RTX_MAX_TRIES, RTX_MIN_INTERVAL_S
from media.packets import PacketViewer
from media.relay import Fanout, RelayConfig
from media.rtpwire import RtpView, parse_rtp, seq_delta
from tests.conftest import LiveServer
from tests.support.lose_one_packet import LoseOnePacket
from tests.support.peers import Viewer, make_publisher, make_viewer, whep_view, whip_publish
from tests.support.waits import until

MAX_BITRATE = 1_234_000


class ViewerWire:
    """Every RTP packet that reaches a viewer's DTLS transport; ``drop`` decides which never get
    past it (the first time)."""

    def __init__(self, transport: RTCDtlsTransport, drop: Callable[[RtpView, int], bool]) -> None:
        self.seen: list[RtpView] = []
        self.dropped: list[RtpView] = []
        original = transport._handle_rtp_data

        async def handle(data: bytes, arrival_time_ms: int) -> None:
            view = parse_rtp(data)
            assert view is not None
            self.seen.append(view)
            if drop(view, len(self.seen)):
                self.dropped.append(view)
                return
            await original(data, arrival_time_ms=arrival_time_ms)

        setattr(transport, "_handle_rtp_data", handle)  # noqa: B010 - this test's own tap, on the viewer's transport


def video_payload_types(viewer: Viewer) -> tuple[int, int]:
    """(media, RTX) payload types the server answered for the viewer's video."""
    section = next(m for m in SessionDescription.parse(viewer.pc.remoteDescription.sdp).media if m.kind == "video")
    pt = section.rtp.codecs[0].payloadType
    rtx = next(c.payloadType for c in section.rtp.codecs if c.mimeType.lower() == "video/rtx"
               and str(c.parameters.get("apt")) == str(pt))
    assert pt is not None and rtx is not None
    return pt, rtx


def assert_contiguous(sent: list[tuple[str, bool]], frames: list[tuple[float, str, bool]]) -> None:
    """The viewer got an unbroken run of the publisher's frames (a frame lost for good breaks it)."""
    got = [d for _, d, _ in frames]
    sent_digests = [d for d, _ in sent]
    starts = [i for i, d in enumerate(sent_digests) if d == got[0]]
    assert any(sent_digests[i : i + len(got)] == got for i in starts), "a frame is missing or altered"


async def not_publishing(http: aiohttp.ClientSession, live: LiveServer, op: str) -> bool:
    async with http.get(f"{live.url}/api/units", headers={"Authorization": f"Bearer {op}"}) as r:
        return not (await r.json())["units"][0]["publishing"]


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
async def test_viewer_numbering_stays_continuous_across_a_reconnect_and_its_nacks_are_answered(
    make_live: Any, http: aiohttp.ClientSession, vp8_loop: EncodedLoop, opus_loop: EncodedAudioLoop, native: bool
) -> None:
    """On the native data plane (the default) and on the Python reference."""
    live: LiveServer = await make_live(media={"engine": "packets", "publisher_timeout_s": 1.0,
                                              "native_dataplane": native})
    token = live.add_unit("bc-01")
    live.add_user("op", "operator")
    op = await live.login("op")
    pub = await make_publisher(vp8_loop, opus_loop)
    await whip_publish(http, live.url, "bc-01", token, pub)
    viewer = await make_viewer()
    pub2 = None
    try:
        await whep_view(http, live.url, "bc-01", op, viewer)
        pt, rtx_pt = video_payload_types(viewer)
        video_seen = [0]

        def drop(view: RtpView, _: int) -> bool:
            if view.payload_type != pt:
                return False
            video_seen[0] += 1
            return video_seen[0] in (60, 61, 62)  # three packets in a row, once

        wire = ViewerWire(viewer.pc.getReceivers()[0].transport, drop)
        await viewer.wait_frames(60, timeout=20)
        await until(lambda: len(wire.dropped) == 3, timeout=10, what="three video packets dropped at the viewer")
        # The server answered the viewer's NACKs from its cache, as RTX (RFC 4588).
        lost = {v.sequence_number for v in wire.dropped}
        await until(lambda: lost <= {int.from_bytes(v.payload[:2], "big") for v in wire.seen
                                     if v.payload_type == rtx_pt}, timeout=10, what="RTX for each dropped packet")
        rtx = [v for v in wire.seen if v.payload_type == rtx_pt]
        originals = {v.sequence_number: v for v in wire.dropped}
        for v in rtx:
            osn = int.from_bytes(v.payload[:2], "big")
            if osn in originals:
                assert v.payload[2:] == originals[osn].payload and v.timestamp == originals[osn].timestamp
        assert_contiguous(pub.sent, viewer.frames)
        assert live.app[LIVE].relay.channel("bc-01").video.stream.viewers, "the packet engine forwards"

        gap_started = time.monotonic()
        await pub.close()  # the unit goes without a DELETE
        await until(functools.partial(not_publishing, http, live, op), timeout=15, what="publisher gone")
        before = len(viewer.frames)
        pub2 = await make_publisher(vp8_loop, opus_loop)
        await whip_publish(http, live.url, "bc-01", token, pub2)
        await viewer.wait_frames(before + 30, timeout=15)
        gap_s = time.monotonic() - gap_started

        media = [v for v in wire.seen if v.payload_type == pt]
        assert len({v.ssrc for v in media}) == 1, "one SSRC for the viewer whoever publishes"
        steps = [seq_delta(b.sequence_number, a.sequence_number) for a, b in zip(media, media[1:], strict=False)]
        assert set(steps) == {1}, f"sequence numbers jump: {sorted(set(steps))}"
        ts_steps = [(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in zip(media, media[1:], strict=False)]
        assert all(step < 0x80000000 for step in ts_steps), "timestamps went backwards"
        biggest = max(ts_steps)
        # The new publisher's timestamps follow on after the wall-clock time without media.
        assert 90000 * 0.05 < biggest < 90000 * (gap_s + 1), f"the reconnect gap is {biggest / 90000:.2f} s of RTP time"
        audio = [v for v in wire.seen if v.payload_type not in (pt, rtx_pt)]
        assert audio
        assert {seq_delta(b.sequence_number, a.sequence_number) for a, b in zip(audio, audio[1:], strict=False)} == {1}
    finally:
        await viewer.close()
        await pub.close()
        if pub2 is not None:
            await pub2.close()


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
async def test_publisher_gets_nacks_for_its_lost_packets_and_receiver_reports_with_remb(
    make_live: Any, http: aiohttp.ClientSession, vp8_loop: EncodedLoop, native: bool
) -> None:
    live: LiveServer = await make_live(media={"engine": "packets", "publisher_max_bitrate": MAX_BITRATE,
                                              "native_dataplane": native})
    token = live.add_unit("bc-02")
    live.add_user("op", "operator")
    op = await live.login("op")
    pub = await make_publisher(vp8_loop)
    rtcp: list[Any] = []
    dropped: list[int] = []
    transport = pub.pc.getSenders()[0].transport
    original_send = transport._send_rtp
    video_sent = [0]

    async def lossy_send(data: bytes) -> None:
        # The network loses three of the publisher's packets on their first way out.
        if not is_rtcp(data):
            view = parse_rtp(data)
            assert view is not None
            if view.payload_type == pub_pt[0]:
                video_sent[0] += 1
                if video_sent[0] in (80, 81, 90):
                    dropped.append(view.sequence_number)
                    return
        await original_send(data)

    pub_pt = [-1]
    setattr(transport, "_send_rtp", lossy_send)  # noqa: B010 - this test's own network, on the publisher's transport
    rtp_hooks.observe_rtcp(transport, lambda data: rtcp.extend(RtcpPacket.parse(data)))
    viewer = await make_viewer(audio=False)
    try:
        await whip_publish(http, live.url, "bc-02", token, pub)
        pub_pt[0] = SessionDescription.parse(pub.pc.remoteDescription.sdp).media[0].rtp.codecs[0].payloadType or -1
        await whep_view(http, live.url, "bc-02", op, viewer)
        await until(lambda: len(dropped) == 3, timeout=20, what="three publisher packets lost")
        await viewer.wait_frames(len(viewer.frames) + 60, timeout=20)

        nacked = {seq for p in rtcp if isinstance(p, RtcpRtpfbPacket) and p.fmt == RTCP_RTPFB_NACK for seq in p.lost}
        assert set(dropped) <= nacked, f"lost {dropped}, NACKed {sorted(nacked)[:10]}"
        remb = [unpack_remb_fci(p.fci) for p in rtcp if isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_APP]
        ssrc = pub.pc.getSenders()[0]._ssrc
        assert remb and all(bitrate == MAX_BITRATE and ssrc in ssrcs for bitrate, ssrcs in remb)
        reports = [r for p in rtcp if isinstance(p, RtcpRrPacket) for r in p.reports if r.ssrc == ssrc]
        assert reports and reports[-1].highest_sequence & 0xFFFF != 0
        assert max(r.highest_sequence for r in reports) >= max(dropped)
        # The publisher's retransmissions filled the gaps: the viewer lost no frame.
        assert_contiguous(pub.sent, viewer.frames)
    finally:
        await viewer.close()
        await pub.close()


def _ntp_to_unix(ntp: int) -> float:
    return (ntp >> 32) - 2208988800 + (ntp & 0xFFFFFFFF) / (1 << 32)


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
async def test_viewer_sender_reports_map_forwarded_timestamps_to_the_wall_clock_for_lip_sync(
    make_live: Any, http: aiohttp.ClientSession, vp8_loop: EncodedLoop, opus_loop: EncodedAudioLoop, native: bool
) -> None:
    """The SRs a real viewer gets carry the publisher's NTP ↔ RTP mapping in the forwarded
    numbering: a packet's timestamp projects through them to about when it was sent, for video and
    audio alike (lip sync), and their packet and octet counts are what the viewer was sent. Sent
    through the native RTCP sender, and through aiortc's own send path (the Python reference)."""
    live: LiveServer = await make_live(media={"engine": "packets", "native_dataplane": native})
    token = live.add_unit("bc-sr")
    live.add_user("op", "operator")
    op = await live.login("op")
    first = await make_publisher(vp8_loop, opus_loop)
    pub = await make_publisher(vp8_loop, opus_loop)
    viewer = await make_viewer()
    try:
        # A first publisher, then a second one with its own timestamps: the viewer's numbering
        # carries on, so the second's SRs must be moved by the same offset as its packets.
        await whip_publish(http, live.url, "bc-sr", token, first)
        await whep_view(http, live.url, "bc-sr", op, viewer)
        transport = viewer.pc.getReceivers()[0].transport
        packets: list[tuple[float, RtpView]] = []
        reports: list[tuple[float, RtcpSrPacket]] = []
        original = transport._handle_rtp_data

        async def handle(data: bytes, arrival_time_ms: int) -> None:
            view = parse_rtp(data)
            assert view is not None
            packets.append((time.time(), view))
            await original(data, arrival_time_ms=arrival_time_ms)

        setattr(transport, "_handle_rtp_data", handle)  # noqa: B010 - this test's own tap, on the viewer's transport
        rtp_hooks.observe_rtcp(transport, lambda data: reports.extend(
            (time.time(), p) for p in RtcpPacket.parse(data) if isinstance(p, RtcpSrPacket)))
        await viewer.wait_frames(10, timeout=20)
        async with http.delete(f"{live.url}{first.location}", headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status in (200, 204), await resp.text()
        await first.close()
        await whip_publish(http, live.url, "bc-sr", token, pub)
        second_at = time.time()
        answer = {m.kind: m for m in SessionDescription.parse(viewer.pc.remoteDescription.sdp).media}
        rates = {m.rtp.codecs[0].payloadType: (kind, m.rtp.codecs[0].clockRate) for kind, m in answer.items()}
        ssrc_kind: dict[int, str] = {}

        def settled() -> bool:
            for _, view in packets:
                if view.payload_type in rates:
                    ssrc_kind[view.ssrc] = rates[view.payload_type][0]
            # The publisher's own SRs (about one a second) must have reached the server first.
            kinds = [ssrc_kind.get(sr.ssrc) for at, sr in reports if at > second_at + 3]
            return kinds.count("video") >= 2 and kinds.count("audio") >= 2

        await until(settled, timeout=30, what="two sender reports per kind at the viewer")
        offsets: dict[str, list[float]] = {"video": [], "audio": []}
        for at, sr in reports:
            kind = ssrc_kind.get(sr.ssrc)
            if kind is None or at <= second_at + 3:
                continue
            rate = 90000 if kind == "video" else 48000
            ntp_s = _ntp_to_unix(sr.sender_info.ntp_timestamp)
            mine = [(t, v) for t, v in packets if v.ssrc == sr.ssrc and v.payload_type in rates]
            for t, v in mine:
                if abs(t - at) < 1.0:
                    delta = ((v.timestamp - sr.sender_info.rtp_timestamp + 0x80000000) & 0xFFFFFFFF) - 0x80000000
                    offsets[kind].append(t - (ntp_s + delta / rate))  # arrival minus projected send time
            # Counts: every packet of this SSRC the viewer had before the SR (minus any in flight).
            before = [v for t, v in mine if t <= at]
            assert len(before) - 40 <= sr.sender_info.packet_count <= len(before) + 40
            octets = sum(len(v.payload) for v in before)
            assert octets * 0.9 - 20000 <= sr.sender_info.octet_count <= octets * 1.1 + 20000
        medians = {kind: statistics.median(values) for kind, values in offsets.items()}
        for kind, median in medians.items():
            assert -0.05 < median < 0.3, f"{kind}: packets arrive {median:.3f} s after their projected send time"
        assert abs(medians["video"] - medians["audio"]) < 0.05, f"audio and video apart: {medians}"
    finally:
        await viewer.close()
        await first.close()


async def test_a_packet_lost_for_good_upstream_is_nacked_a_few_times_then_a_keyframe_is_asked_for(
    make_live: Any, http: aiohttp.ClientSession, vp8_loop: EncodedLoop, opus_loop: EncodedAudioLoop
) -> None:
    """A packet whose every retransmission is lost too: the server stops NACKing it after a few
    tries and asks the publisher for a keyframe, since nothing after it can be decoded. Nobody
    else asks here: no viewer, no recording, no periodic request. Lost audio is not NACKed: the
    publisher did not offer NACK for Opus."""
    live: LiveServer = await make_live(media={"engine": "packets", "keyframe_interval_s": 0},
                                       archive={"enabled": False})
    token = live.add_unit("bc-03")
    pub = await make_publisher(vp8_loop, opus_loop)
    assert pub.video is not None
    sender = pub.pc.getSenders()[0]
    transport = sender.transport
    original_send = transport._send_rtp
    video_pt: list[int] = []  # the publisher's video payload type, once answered
    lost: list[int] = []
    retransmitted = [0]
    video_sent = [0]
    audio_sent = [0]

    async def lossy_send(data: bytes) -> None:
        if video_pt and not is_rtcp(data):
            view = parse_rtp(data)
            assert view is not None
            if view.payload_type != video_pt[0]:
                audio_sent[0] += 1
                if audio_sent[0] in (40, 41):
                    return
            else:  # video; no RTX here: a retransmission is the packet again
                if lost and view.sequence_number == lost[0]:
                    retransmitted[0] += 1
                    return  # every retransmission of it is lost as well
                video_sent[0] += 1
                if video_sent[0] == 100:
                    lost.append(view.sequence_number)
                    return
        await original_send(data)

    setattr(transport, "_send_rtp", lossy_send)  # noqa: B010 - this test's own network, on the publisher's transport
    rtcp: list[Any] = []
    rtp_hooks.observe_rtcp(transport, lambda data: rtcp.extend(RtcpPacket.parse(data)))
    try:
        await whip_publish(http, live.url, "bc-03", token, pub)
        section = next(m for m in SessionDescription.parse(pub.pc.remoteDescription.sdp).media if m.kind == "video")
        assert not [c for c in section.rtp.codecs if c.mimeType.lower() == "video/rtx"]
        video_pt.append(section.rtp.codecs[0].payloadType or -1)
        await until(lambda: lost, timeout=20, what="a publisher packet lost")
        asked_before = pub.video.keyframe_requests  # the new publisher's request
        await until(lambda: pub.video is not None and pub.video.keyframe_requests > asked_before, timeout=10,
                    what="a keyframe asked for after the packet was lost for good")
        tries = sum(lost[0] in p.lost for p in rtcp if isinstance(p, RtcpRtpfbPacket) and p.fmt == RTCP_RTPFB_NACK)
        assert 2 <= tries <= 4 and retransmitted[0] == tries, (tries, retransmitted[0])
        assert audio_sent[0] > 41
        audio_ssrc = pub.pc.getSenders()[1]._ssrc
        assert not [p for p in rtcp if isinstance(p, RtcpRtpfbPacket) and p.media_ssrc == audio_ssrc]
    finally:
        await pub.close()


async def test_a_lost_packet_is_nacked_again_while_no_other_packet_arrives(
    make_live: Any, http: aiohttp.ClientSession, vp8_loop: EncodedLoop
) -> None:
    """The last packets before a publisher goes quiet (an officer stopping the camera, a video
    stall) are recovered like any other: the NACK tracker's retries do not wait for the next
    packet. Packet 100 and its first retransmission are lost; from packet 106 on no new video
    packet reaches the server, only retransmissions, and packet 100 is asked for again and
    arrives."""
    live: LiveServer = await make_live(media={"engine": "packets", "keyframe_interval_s": 0},
                                       archive={"enabled": False})
    token = live.add_unit("bc-04")
    pub = await make_publisher(vp8_loop)
    net = LoseOnePacket(pub.pc.getSenders()[0], nth=100, quiet_after=105)
    rtcp: list[Any] = []
    rtp_hooks.observe_rtcp(pub.pc.getSenders()[0].transport, lambda data: rtcp.extend(RtcpPacket.parse(data)))
    try:
        await whip_publish(http, live.url, "bc-04", token, pub)
        await until(lambda: net.tries >= 2, timeout=20,
                    what="the lost packet asked for again after its first retransmission was lost")
        nacks = sum(net.lost in p.lost for p in rtcp if isinstance(p, RtcpRtpfbPacket) and p.fmt == RTCP_RTPFB_NACK)
        assert nacks == net.tries >= 2, (nacks, net.tries)
        stream = live.app[LIVE].relay.channel("bc-04").video.stream
        await until(lambda: not stream.nacks.waiting, timeout=10, what="the server no longer missing anything")
        assert stream.nacks.given_up == 0
    finally:
        await pub.close()


async def test_a_whip_delete_waits_for_the_packets_still_being_recovered(
    make_live: Any, http: aiohttp.ClientSession, vp8_loop: EncodedLoop
) -> None:
    """An officer stops the camera on a lossy link: the WHIP DELETE arrives while the server is
    still recovering a packet (it and its first retransmission were lost). The server answers
    the DELETE once the packet arrived (at most END_SETTLE_S later), so the publisher, which keeps
    its connection until then, is asked again and the recording loses nothing."""
    live: LiveServer = await make_live(media={"engine": "packets", "keyframe_interval_s": 0},
                                       archive={"enabled": False})
    token = live.add_unit("bc-05")
    pub = await make_publisher(vp8_loop)
    net = LoseOnePacket(pub.pc.getSenders()[0], nth=100)
    try:
        await whip_publish(http, live.url, "bc-05", token, pub)
        await asyncio.wait_for(net.first_retransmission_lost.wait(), 20)
        assert pub.location
        async with http.delete(live.url + pub.location, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200, await resp.text()
        assert net.tries >= 2, "the DELETE was answered before the lost packet was asked for again"
        nacks = live.app[LIVE].relay.channel("bc-05").video.stream.nacks
        assert nacks.given_up == 0 and not nacks.waiting
    finally:
        await pub.close()


# A viewer's NACKs on a real fanout's packet stream ------------------------------------------------
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
PACKET_BYTES = 1000
RATE = 100  # packets a second: 100 kB/s forwarded


class NackBench:
    """A fanout fed ``RATE`` packets a second of ``PACKET_BYTES`` (the first a keyframe) on a clock
    of our own, and viewers whose packets land in lists."""

    def __init__(self, config: RelayConfig | None = None) -> None:
        self.now = 100.0
        self.fanout = Fanout("bc-nack", "video", config or RelayConfig(), lambda: self.now)
        self.seq = 1000
        self.wires: dict[PacketViewer, list[RtpView]] = {}

    async def start(self) -> None:
        async def pli() -> None:
            pass

        self.fanout.attach_packets("pub-1", VP8, pli)

    def viewer(self) -> PacketViewer:
        wire: list[RtpView] = []

        def send(data: bytes) -> None:
            view = parse_rtp(data)
            assert view is not None
            wire.append(view)

        viewer = PacketViewer(self.fanout.stream, rtp_hooks.FunctionSend(send), lambda: True, ssrc=1111,
                              payload_type=96, rtx_ssrc=2222, rtx_payload_type=97)
        self.fanout.stream.subscribe(viewer)
        self.wires[viewer] = wire
        return viewer

    def forward(self, seconds: float) -> list[int]:
        """Packets for ``seconds`` on the clock; answers their sequence numbers."""
        out = []
        for _ in range(round(seconds * RATE)):
            self.now += 1 / RATE
            head = b"\x10\x00" if self.seq == 1000 else b"\x10\x01"  # VP8: a keyframe's start, then deltas
            self.fanout.stream.on_packet(self.seq, self.seq * 3000, True, head + bytes(PACKET_BYTES - 2), self.now)
            out.append(self.seq)
            self.seq += 1
        return out

    def resent(self, viewer: PacketViewer) -> list[int]:
        """Original sequence numbers of the RTX packets ``viewer`` got, in order."""
        return [int.from_bytes(v.payload[:2], "big") for v in self.wires[viewer] if v.payload_type == 97]


async def nack_bench() -> NackBench:
    bench = NackBench()
    await bench.start()
    return bench


async def test_a_packet_nacked_over_and_over_is_sent_again_at_most_three_times_a_round_trip_apart() -> None:
    bench = await nack_bench()
    try:
        viewer = bench.viewer()
        seqs = bench.forward(0.3)
        lost = seqs[10]
        for _ in range(10):  # ten NACKs of it within 50 ms: one copy
            viewer.retransmit(lost)
            bench.now += 0.005
        assert bench.resent(viewer) == [lost] and viewer.limit.repeats == 9
        bench.now += RTX_MIN_INTERVAL_S  # a round trip after the first copy: once more
        viewer.retransmit(lost)
        viewer.retransmit(lost)
        assert bench.resent(viewer) == [lost] * 2 and viewer.limit.repeats == 10
        for _ in range(5):  # and then at most RTX_MAX_TRIES in all, however far apart
            bench.now += 2 * RTX_MIN_INTERVAL_S
            viewer.retransmit(lost)
        assert bench.resent(viewer) == [lost] * RTX_MAX_TRIES
        assert viewer.retransmitted == RTX_MAX_TRIES and viewer.limit.suppressed == 10 + 5 - 1
        assert viewer.limit.over_budget == 0 and viewer.nack_misses == 0
        # Every copy is the packet as forwarded, in RTX (RFC 4588).
        original = next(v for v in bench.wires[viewer] if v.sequence_number == lost and v.payload_type == 96)
        assert all(v.payload[2:] == original.payload and v.timestamp == original.timestamp
                   for v in bench.wires[viewer] if v.payload_type == 97)
    finally:
        await bench.fanout.close()


async def test_each_lost_packet_nacked_once_is_sent_again_even_a_lost_burst() -> None:
    """The normal case: 5% loss, each lost packet NACKed once about a round trip later, and a
    burst of 0.2 s lost at once (a 4G handover): every one is answered, nothing suppressed."""
    bench = await nack_bench()
    try:
        viewer = bench.viewer()
        lost: list[int] = []
        for _ in range(300):
            seqs = bench.forward(1 / RATE)
            if seqs[0] % 20 == 7:
                lost.append(seqs[0])
            if lost and seqs[0] - lost[-1] == 10:  # 0.1 s later
                viewer.retransmit(lost[-1])
        burst = bench.forward(0.2)
        bench.forward(0.1)
        for seq in burst:
            viewer.retransmit(seq)
        assert bench.resent(viewer) == lost + burst
        assert viewer.retransmitted == len(lost) + len(burst) and viewer.limit.suppressed == 0
    finally:
        await bench.fanout.close()


async def test_the_retransmission_budget_is_the_configured_share() -> None:
    """``[media] viewer_rtx_share`` reaches each viewer's limit: at 0.25 a storm gets a quarter of
    what was forwarded again over a second, at the default (1.0) all it asks for here."""
    for share, expected in ((0.25, RATE // 4), (RelayConfig().viewer_rtx_share, RATE)):
        bench = NackBench(RelayConfig(viewer_rtx_share=share))
        await bench.start()
        try:
            viewer = bench.viewer()
            seqs = bench.forward(2.0)
            for seq in seqs[-RATE:]:  # the last second, once each
                viewer.retransmit(seq)
            assert 0.9 * expected <= viewer.retransmitted <= expected, (share, viewer.retransmitted)
        finally:
            await bench.fanout.close()


async def test_a_nack_storm_beyond_the_budget_is_suppressed_and_counted_and_other_viewers_are_answered() -> None:
    """A broken viewer NACKs everything the cache holds every 0.1 s: what it gets again over any
    second stays within RTX_BUDGET_SHARE of what was forwarded to it (the budget is used, not
    more); the rest is counted as suppressed. Another viewer of the stream is answered as usual."""
    bench = await nack_bench()
    try:
        broken = bench.viewer()
        other = bench.viewer()
        seqs = bench.forward(2.0)
        nacks = 0
        sent_at: list[tuple[float, int]] = []
        for _ in range(30):  # 3 s of storm
            seqs += bench.forward(0.1)
            before = broken.retransmitted
            for seq in seqs[-150:]:  # the last 1.5 s: all in the cache
                broken.retransmit(seq)
                nacks += 1
            sent_at += [(bench.now, broken.retransmitted - before)]
        other.retransmit(seqs[-5])
        assert bench.resent(other) == [seqs[-5]]
        assert broken.nack_misses == 0 and broken.retransmitted + broken.limit.suppressed == nacks
        assert broken.limit.over_budget > nacks * 0.8
        per_second = RATE  # packets forwarded per second
        for end, _ in sent_at:
            in_window = sum(n for t, n in sent_at if end - 1.0 < t <= end)
            assert in_window <= RTX_BUDGET_SHARE * per_second * 1.1, (end, in_window)
        busiest = max(sum(n for t, n in sent_at if end - 1.0 < t <= end) for end, _ in sent_at)
        assert busiest >= RTX_BUDGET_SHARE * per_second * 0.9
    finally:
        await bench.fanout.close()


async def test_a_keyframe_whose_opening_packet_arrives_after_the_rest_of_its_frame_still_starts_a_viewer() -> None:
    """On a reordering link the packets of a keyframe's burst arrive in any order. The one that
    opens it (VP8: S=1, partition 0, key frame) is the start even when others of its frame came
    first: the keyframe counts as arrived (no more PLIs for it) and a waiting viewer starts there,
    once per frame. Judged by the packet before it, this keyframe went unseen, and on the lossy
    link a run of keyframes in a row did (the server asked again every 0.5 s for 3 s)."""
    bench = await nack_bench()
    try:
        bench.forward(0.5)
        fanout = bench.fanout
        viewer = bench.viewer()
        assert viewer.waiting
        keyframes_before = fanout.keyframes_in
        fanout.request_keyframe("test")
        assert fanout.keyframe_awaited
        ts = bench.seq * 3000
        first = bench.seq
        rest = b"\x00\x00" + bytes(PACKET_BYTES - 2)  # VP8: a continuation of partition 0
        for seq in (first + 2, first + 1, first + 4, first, first + 3):  # the opening packet arrives fourth
            bench.now += 1 / RATE
            payload = b"\x10\x00" + bytes(PACKET_BYTES - 2) if seq == first else rest
            fanout.stream.on_packet(seq, ts, seq == first + 4, payload, bench.now)
        bench.seq = first + 5
        assert fanout.keyframes_in == keyframes_before + 1
        assert not fanout.keyframe_awaited
        assert not viewer.waiting
        wire = bench.wires[viewer]
        assert [v.payload[:2] for v in wire][:1] == [b"\x10\x00"], "the viewer did not start at the keyframe"
        assert len(wire) == 2  # the opening packet and the one after it that arrived later
        # The same frame's opening packet again (a retransmission) is no second keyframe.
        fanout.stream.on_packet(first, ts, False, b"\x10\x00" + bytes(PACKET_BYTES - 2), bench.now)
        assert fanout.keyframes_in == keyframes_before + 1
        bench.forward(0.1)
        assert fanout.keyframes_in == keyframes_before + 1
    finally:
        await bench.fanout.close()


H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102,
                             parameters={"packetization-mode": "1"})
STAP_A_SPS_PPS = b"\x18" + b"\x00\x04" + b"\x67\x42\xc0\x1f" + b"\x00\x03" + b"\x68\xce\x3c"  # SPS, PPS
FU_A_IDR_START = b"\x7c\x85" + bytes(500)  # FU indicator (NRI 3, type 28), FU header S=1 type 5 (IDR)
FU_A_IDR_END = b"\x7c\x45" + bytes(500)  # E=1


async def test_an_h264_keyframe_starts_at_its_sps_even_when_an_idr_fragment_overtook_it() -> None:
    """A publisher that sends SPS/PPS in band (a STAP-A before each IDR, as Chromium does): when
    the IDR's first fragment arrives before the STAP-A, a waiting viewer still starts at the
    STAP-A, and gets it: starting at the fragment would leave it without SPS/PPS, which are then
    older than its start. The keyframe counts once."""
    now = [100.0]
    fanout = Fanout("bc-h264", "video", RelayConfig(), lambda: now[0])

    async def pli() -> None:
        pass

    fanout.attach_packets("pub-1", H264, pli)
    stream = fanout.stream
    try:
        def keyframe(first: int, order: tuple[int, ...]) -> None:
            ts = first * 3000
            frame = {first: (STAP_A_SPS_PPS, False), first + 1: (FU_A_IDR_START, False),
                     first + 2: (FU_A_IDR_END, True)}
            for seq in order:
                now[0] += 0.001
                payload, marker = frame[seq]
                stream.on_packet(seq, ts, marker, payload, now[0])

        keyframe(1000, (1000, 1001, 1002))  # in order: the stream's SPS is in band
        assert fanout.keyframes_in == 1
        wire: list[RtpView] = []

        def send(data: bytes) -> None:
            view = parse_rtp(data)
            assert view is not None
            wire.append(view)

        viewer = PacketViewer(stream, rtp_hooks.FunctionSend(send), lambda: True, ssrc=1111, payload_type=102,
                              rtx_ssrc=2222, rtx_payload_type=103)
        stream.subscribe(viewer)
        keyframe(1003, (1004, 1003, 1005))  # the IDR's first fragment overtakes the STAP-A
        assert fanout.keyframes_in == 2
        assert [v.payload for v in wire] == [STAP_A_SPS_PPS, FU_A_IDR_END], "the viewer did not start at the SPS"
    finally:
        await fanout.close()

"""The packet engine's fan-out: one publisher stream's RTP packets rewritten for each viewer.

A :class:`PacketStream` belongs to one :class:`~media.relay.Fanout` (one kind of one unit) and
lives as long as it. Packets reach it from :mod:`media.ingress` with the publisher's sequence
numbers and timestamps; it gives them continuous ones (``out``) that carry on across publisher
reconnects: a new source's first packet follows the last forwarded sequence number, and its
timestamp the last one plus the wall-clock time in between. Each packet is cached for viewers'
NACKs, handed to each :class:`PacketViewer` (new viewers and every viewer after a source change
start at the first packet of a keyframe), and assembled into frames for the fanout's taps (the
recorder) only while there are taps.

A :class:`PacketViewer` rewrites the header for its viewer (that sender's SSRC and payload type,
its own sequence numbers: continuous even when it skips packets while waiting for a keyframe; no
CSRCs; the header extensions it negotiated, :mod:`media.rtpext`) and sends it on the viewer's
transport. The viewer's ``RTCRtpSender`` stays for SDP and RTCP and reads an :class:`IdleTrack`,
so its RTP loop idles.

All of it runs synchronously in the publisher's datagram callback (:mod:`media.rtp_hooks`): no
coroutine or task per packet.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING, Any, Callable

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtcpSenderInfo

from . import _dataplane
from .assembly import Assembler, frame_assembler
from .keyframes import h264_payload_has_sps, payload_starts_keyframe
from .loss import CachedPacket, NackTracker, PacketCache, RetransmitLimit
from .rtp_hooks import RtpSend
from .rtpext import ExtensionPlan, abs_send_time, find_extension, intern
from .rtpwire import seq_delta

if TYPE_CHECKING:
    from .relay import Fanout

logger = logging.getLogger(__name__)

LATE_LIMIT = 400  # packets: a late packet older than this (the cache holds 512) is dropped
CACHE_AGE_S = 1.5  # the packet cache answers NACKs for this long (a round trip or a few), not longer
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01


def ntp_now() -> int:
    """Wall clock as a 64-bit NTP timestamp (RFC 3550 §4)."""
    t = time.time() + NTP_EPOCH_OFFSET
    return (int(t) << 32) | int((t % 1) * (1 << 32))


class IdleTrack(MediaStreamTrack):
    """What a viewer's ``RTCRtpSender`` reads in the packet engine: nothing, until stopped."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._stopped = asyncio.Event()

    async def recv(self) -> Any:
        await self._stopped.wait()
        raise MediaStreamError

    def stop(self) -> None:
        self._stopped.set()
        super().stop()


class PacketStream(_dataplane.StreamCore):
    """What :meth:`on_packet` uses lives in the C fields of :class:`media._dataplane.StreamCore`
    (attributes here as anywhere). On the native data plane ``on_packet`` is its C twin, which the
    native ingress also calls without a Python frame; the method below is the reference."""

    def __init__(self, fanout: Fanout, clock: Callable[[], float]) -> None:
        super().__init__()
        native = fanout.config.native_dataplane
        self.fanout = fanout
        self.clock = clock
        self.viewers: set[PacketViewer] = set()
        self._fan: tuple[PacketViewer, ...] = ()  # the viewers, as fan_out takes them
        # the native data plane's fan-out (media._dataplane), or the Python reference
        self._fan_out = _dataplane.fan_out if native else fan_out
        self.cache = _dataplane.PacketCache(max_age_s=CACHE_AGE_S) if native else PacketCache(max_age_s=CACHE_AGE_S)
        self.nacks = NackTracker()
        if native:
            self.on_packet = self._on_packet_native  # type: ignore[method-assign,assignment]
        self.assembler: Assembler | None = None
        self._assembling = False
        self._mime = ""
        self._video = fanout.kind == "video"
        self._clock_rate = 90000
        self._fresh = True
        self._seq_off = 0
        self._ts_off = 0
        self.last_seq: int | None = None  # highest forwarded sequence number
        self.last_ts: int | None = None
        self.last_at: float | None = None
        self._keyframe_ts: int | None = None  # timestamp of the last frame a keyframe start was seen in
        self._sps_in_band = False  # H.264: the publisher's keyframes open with their SPS
        self.sender_report: tuple[int, int] | None = None  # (NTP, forwarded RTP timestamp) of the publisher's last SR
        self.plans: dict[tuple[Any, ...], ExtensionPlan] = {}  # the viewers' header extension plans, one per kind
        self._audio_level_id: int | None = None  # the publisher's ssrc-audio-level id, if it negotiated one

    def start_source(self, codec: Any, audio_level_id: int | None = None) -> None:
        """A new publisher (or the same one again) feeds this stream from its next packet on;
        ``audio_level_id``: the ssrc-audio-level extension id it negotiated (None: none)."""
        self._fresh = True
        self._audio_level_id = audio_level_id
        self.nacks.reset()
        self.sender_report = None
        self._mime = codec.mimeType.lower()
        self._sps_in_band = False
        self._clock_rate = codec.clockRate
        if self.assembler is None or self.assembler.codec_key != (self._mime, codec.clockRate):
            self.assembler = frame_assembler(codec, self._emit, self._frame_lost,
                                             native=self.fanout.config.native_dataplane)
        else:
            self.assembler.restart()
        for viewer in self.viewers:
            viewer.waiting = self._video

    def on_sender_report(self, ntp: int, rtp_timestamp: int) -> None:
        if not self._fresh:
            self.sender_report = (ntp, (rtp_timestamp + self._ts_off) & 0xFFFFFFFF)

    def on_packet(self, seq: int, ts: int, marker: bool, payload: bytes, now: float, ext_profile: int = 0,
                  ext: bytes = b"") -> None:
        """One packet of the current source (sequence number and timestamp as the publisher sent
        them; ``ext_profile``/``ext``: its header extension block, if any)."""
        if self._fresh:
            self._fresh = False
            if self.last_seq is None or self.last_ts is None or self.last_at is None:
                self._seq_off = self._ts_off = 0
            else:
                gap = max(1, int((now - self.last_at) * self._clock_rate))
                self._seq_off = (self.last_seq + 1 - seq) & 0xFFFF
                self._ts_off = (self.last_ts + gap - ts) & 0xFFFFFFFF
            self.last_seq = None
        self.nacks.seen(seq, now)
        out_seq = (seq + self._seq_off) & 0xFFFF
        out_ts = (ts + self._ts_off) & 0xFFFFFFFF
        if self.last_seq is not None and seq_delta(out_seq, self.last_seq) <= 0:
            # Late (a retransmission, or reordered): forwarded unless it is a duplicate or older
            # than the cache, even after the NACK tracker gave up on it.
            if seq_delta(out_seq, self.last_seq) <= -LATE_LIMIT or self.cache.get(out_seq) is not None:
                return
        if self.last_seq is None or seq_delta(out_seq, self.last_seq) > 0:
            self.last_seq = out_seq
            self.last_ts = out_ts
        self.last_at = now
        fanout = self.fanout
        fanout.last_packet_at = now
        fanout.bytes_in += len(payload)
        if self._video:
            # A viewer may start here only if this packet opens its keyframe, once per frame: in
            # H.264 the IDR's own first fragment follows the SPS/PPS packet of the same frame, and
            # starting there would lose them. Judged by the payload, not by the packet before it:
            # the packets of a burst arrive in any order on a reordering link, and the opening one
            # after others of its frame is still the start (a waiting viewer NACKs the rest).
            # An H.264 publisher that sends its SPS in band (Chromium: a STAP-A before each IDR)
            # starts a keyframe only there: an IDR fragment that overtook it is no start, or a
            # viewer starting at it would go without the SPS/PPS (older than its start).
            starts = out_ts != self._keyframe_ts and payload_starts_keyframe(self._mime, payload)
            if starts and self._h264:
                if h264_payload_has_sps(payload):
                    self._sps_in_band = True
                elif self._sps_in_band:
                    starts = False
            if starts:
                self._keyframe_ts = out_ts
            if marker:
                fanout.frames_in += 1
            if starts:
                fanout.keyframe_arrived()
            elif fanout.keyframe_awaited:
                fanout.keyframe_overdue(now)
        else:
            starts = True
            fanout.frames_in += 1
        self.cache.put(CachedPacket(out_seq, out_ts, marker, payload), now)
        if self._fan:
            level = None
            if ext and self._audio_level_id is not None:
                level = find_extension(ext_profile, ext, self._audio_level_id)
            self._fan_out(self._fan, out_seq, out_ts, marker, payload, starts, level)
        if fanout.taps and self.assembler is not None:
            if not self._assembling:
                self._assembling = True
                self.assembler.restart()
            self.assembler.push(out_seq, out_ts, marker, payload, now)
        else:
            self._assembling = False

    def _emit(self, packet: Any, keyframe: bool) -> None:
        for tap in tuple(self.fanout.taps):
            tap(packet, keyframe)

    def _frame_lost(self) -> None:
        self.fanout.request_keyframe("recording frame lost")

    # viewers -----------------------------------------------------------------------------
    def subscribe(self, viewer: PacketViewer) -> None:
        viewer.plan = intern(self.plans, viewer.plan)
        self.viewers.add(viewer)
        self._fan = tuple(self.viewers)

    def unsubscribe(self, viewer: PacketViewer) -> None:
        self.viewers.discard(viewer)
        self._fan = tuple(self.viewers)

    def drop_viewers(self) -> None:
        self.viewers.clear()
        self._fan = ()


def fan_out(viewers: tuple[PacketViewer, ...], out_seq: int, out_ts: int, marker: bool, payload: bytes,
            starts: bool, level: bytes | None, send_time: bytes | None = None) -> None:
    """One packet of a stream (its continuous numbering) to each viewer, with the header extension
    block of each viewer's plan, built once per plan (``send_time``: abs-send-time's value; None:
    now). The reference of :func:`media._dataplane.fan_out`, the native data plane's."""
    blocks: dict[ExtensionPlan, bytes] = {}
    for viewer in viewers:
        plan = viewer.plan
        if plan is None:
            viewer.forward(out_seq, out_ts, marker, payload, starts, b"")
            continue
        block = blocks.get(plan)
        if block is None:
            if send_time is None:
                send_time = abs_send_time()
            block = blocks[plan] = plan.block(send_time, level)
        viewer.forward(out_seq, out_ts, marker, payload, starts, block)


class PacketViewer(_dataplane.ViewerCore):
    """One viewer of one stream: header rewrite, send, and retransmission from the cache.

    What :meth:`forward` uses per packet lives in the C fields of :class:`media._dataplane.ViewerCore`
    (attributes here as anywhere): the native :func:`media._dataplane.fan_out` forwards with them
    without calling :meth:`forward`, its reference, and calls :meth:`_begin` and
    :meth:`_first_frame` as this does."""

    def __init__(self, stream: PacketStream, send: RtpSend, connected: Callable[[], bool], *, ssrc: int,
                 payload_type: int, rtx_ssrc: int, rtx_payload_type: int | None,
                 plan: ExtensionPlan | None = None) -> None:
        super().__init__()
        self.stream = stream
        self.fanout = stream.fanout
        self.plan = plan  # header extensions this viewer negotiated (None: none are written)
        self._send = send  # and _send_rtp = send.rtp
        self._connected = connected
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.rtx_ssrc = rtx_ssrc
        self.rtx_payload_type = rtx_payload_type
        self.kind = stream.fanout.kind
        self.video = self.kind == "video"
        self.waiting = self.video  # for the first packet of a keyframe
        self._asked = False
        self._delta = 0  # viewer sequence number = stream sequence number + delta
        self._epoch = None  # stream sequence number this viewer (re)started at
        self._next_seq = None
        self._rtx_seq = random.randint(0, 0xFFFF)
        self._created = time.monotonic()
        self.packets = 0
        self.octets = 0
        self.frames = 0
        self.retransmitted = 0
        self.nack_misses = 0  # NACKed packets the cache did not have (lost upstream, or too old)
        # what its NACKs may cost; counts those suppressed
        self.limit = RetransmitLimit(stream.clock(), share=stream.fanout.config.viewer_rtx_share)

    def forward(self, out_seq: int, ts: int, marker: bool, payload: bytes, starts: bool, ext: bytes) -> None:
        """Send one packet of the stream (its continuous numbering) with the extension block ``ext``."""
        if self.waiting or self._epoch is None:
            if not self._begin(out_seq, starts):
                return
        else:
            since = seq_delta(out_seq, self._epoch)
            if since < 0:
                return  # older than this viewer's start
            if since > 0x4000:  # keep the start within half the 16-bit range of what is sent
                self._epoch = (out_seq - LATE_LIMIT) & 0xFFFF
        seq = (out_seq + self._delta) & 0xFFFF
        try:
            self._send_rtp(self.payload_type, marker, seq, ts, self.ssrc, payload, ext)
        except ConnectionError:
            return
        if self._next_seq is None or seq_delta(seq, self._next_seq) >= 0:
            self._next_seq = (seq + 1) & 0xFFFF
        self.packets += 1
        self.octets += len(payload)
        if marker or not self.video:
            self.frames += 1
            self.fanout.frames_out += 1
            if self.frames == 1:
                self._first_frame()

    def _begin(self, out_seq: int, starts: bool) -> bool:
        """The viewer's first packet, or the first since it began to wait for a keyframe: whether
        it is sent. A waiting viewer starts at the first packet of a keyframe once connected."""
        if self.waiting:
            if not self._connected():
                return False
            if not self._asked:  # a keyframe that passed before DTLS was up is lost to this viewer
                self._asked = True
                self.fanout.request_keyframe("viewer connected")
            if not starts:
                return False
            self.waiting = False
            self._delta = 0 if self._next_seq is None else (self._next_seq - out_seq) & 0xFFFF
        self._epoch = out_seq
        return True

    def _first_frame(self) -> None:
        self.fanout.first_frames.append(time.monotonic() - self._created)

    def retransmit(self, seq: int) -> None:
        """Answer the viewer's NACK of ``seq`` (its own numbering) from the stream's cache, within
        :class:`~media.loss.RetransmitLimit` (a suppressed NACK is counted there)."""
        if self._epoch is None:
            return
        out_seq = (seq - self._delta) & 0xFFFF
        if seq_delta(out_seq, self._epoch) < 0:
            return
        cached = self.stream.cache.get(out_seq)
        if cached is None:
            self.nack_misses += 1
            return
        if not self.limit.admit(seq, len(cached.payload), self.octets, self.stream.clock()):
            return
        ext = self.plan.block(abs_send_time(), None) if self.plan is not None else b""
        try:
            if self.rtx_payload_type is not None:  # RFC 4588: original sequence number, then payload
                rtx_seq, self._rtx_seq = self._rtx_seq, (self._rtx_seq + 1) & 0xFFFF
                self._send.rtp(self.rtx_payload_type, cached.marker, rtx_seq, cached.timestamp, self.rtx_ssrc,
                               seq.to_bytes(2, "big") + cached.payload, ext)
            else:
                self._send.rtp(self.payload_type, cached.marker, seq, cached.timestamp, self.ssrc, cached.payload, ext)
        except ConnectionError:
            return
        self.retransmitted += 1

    def sender_info(self) -> RtcpSenderInfo | None:
        """This viewer's SR: the publisher's NTP ↔ RTP mapping (lip sync) when one arrived since
        the source started, else the wall clock of the newest packet and its timestamp."""
        stream = self.stream
        if stream.sender_report is not None:
            ntp, rtp = stream.sender_report
        elif stream.last_ts is not None and stream.last_at is not None:
            age = max(0.0, stream.clock() - stream.last_at)
            ntp = ntp_now() - int(age * (1 << 32))
            rtp = stream.last_ts
        else:
            return None
        return RtcpSenderInfo(ntp_timestamp=ntp, rtp_timestamp=rtp, packet_count=self.packets & 0xFFFFFFFF,
                              octet_count=self.octets & 0xFFFFFFFF)

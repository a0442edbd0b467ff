"""A publisher's RTP taken off its DTLS transport, before aiortc's receive pipeline, into the
packet engine; and the RTCP that publisher needs back.

Packets are told apart by payload type (the publisher's, as negotiated): media payload types go
to their kind's :class:`~media.packets.PacketStream`, RTX payload types (RFC 4588) are unwrapped
to the original sequence number first (padding-only RTX probes are dropped). Everything runs as
packets arrive, synchronously in the datagram callback (:func:`media.rtp_hooks.intercept_rtp`),
without tasks of its own:

- gaps are NACKed upstream through the stream's :class:`~media.loss.NackTracker` (if NACK was
  negotiated for the codec, RFC 4585), and a video packet it gives up on makes the fanout ask the
  publisher for a keyframe at once: the frames after it cannot be decoded until one arrives. The
  tracker's tries are made as packets arrive; while something is missing, one timer per stream
  also makes them when none arrives (the last packets before a publisher goes quiet, a stall),
  so they are not left to a single NACK;
- about once a second the publisher gets a receiver report (loss, highest sequence number,
  LSR/DLSR; jitter 0) and a REMB of ``max_bitrate``: aiortc estimates nothing here, and Chromium
  stays at its start bitrate without feedback;
- keyframe requests (PLI) go to the stream's SSRC as soon as one is known.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any, Callable

from aiortc import RTCDtlsTransport
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    pack_remb_fci,
)

from . import _dataplane, rtp_hooks
from .packets import PacketStream
from .rtpwire import parse_rtp, seq_delta, unwrap_rtx_payload

logger = logging.getLogger(__name__)

REPORT_INTERVAL_S = 1.0
_SR_HEAD = struct.Struct("!BBHIQI")  # V/P/RC, PT=200, length, SSRC, NTP, RTP timestamp


class _Route(_dataplane.RouteCore):
    """One stream of a publisher. What the packet path uses (``stream``, ``ssrc``, ``nack``,
    ``pli_pending``, ``retry`` and the reception statistics) lives in the C fields of
    :class:`media._dataplane.RouteCore`; :meth:`count` is the reference of the native one."""

    def __init__(self, kind: str, stream: PacketStream, codec: Any, send: rtp_hooks.RtpSend,
                 audio_level_id: int | None = None, nack: bool = True) -> None:
        super().__init__()
        self.kind = kind
        self.stream = stream
        self.codec = codec
        self.send = send  # RTCP to the publisher
        self.audio_level_id = audio_level_id  # the publisher's ssrc-audio-level extension id
        self.nack = nack  # NACK negotiated (``a=rtcp-fb:PT nack``)
        self.nacked = 0  # sequence numbers NACKed (tries included)
        self.lost = 0  # given up on: lost for good
        self.ssrc: int | None = None
        self.pli_pending = False
        self.retry: asyncio.TimerHandle | None = None  # the NACK tracker's next due time, while something is missing
        # RFC 3550 A.3 reception statistics
        self.base_seq = 0
        self.max_seq = 0
        self.cycles = 0
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.lsr = 0  # middle 32 bits of the NTP time of the publisher's last SR
        self.lsr_at: float | None = None

    def count(self, seq: int) -> None:
        if self.received == 0:
            self.base_seq = self.max_seq = seq
        else:
            d = seq_delta(seq, self.max_seq)
            if d > 0:
                if seq < self.max_seq:
                    self.cycles += 1 << 16
                self.max_seq = seq
        self.received += 1

    def report(self, now: float) -> RtcpReceiverInfo:
        extended = self.cycles + self.max_seq
        expected = extended - self.base_seq + 1
        expected_interval = expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior, self.received_prior = expected, self.received
        lost_interval = expected_interval - received_interval
        fraction = (lost_interval << 8) // expected_interval if expected_interval > 0 and lost_interval > 0 else 0
        dlsr = int((now - self.lsr_at) * 65536) if self.lsr_at is not None else 0
        return RtcpReceiverInfo(
            ssrc=self.ssrc or 0, fraction_lost=min(fraction, 255),
            packets_lost=max(-(1 << 23), min(expected - self.received, (1 << 23) - 1)),
            highest_sequence=extended & 0xFFFFFFFF, jitter=0, lsr=self.lsr, dlsr=dlsr,
        )


class PublisherIngress(_dataplane.IngressCore):
    """All media of one publisher's peer connection, routed into packet streams.

    What :meth:`_on_rtp` uses lives in the C fields of :class:`media._dataplane.IngressCore`
    (attributes here as anywhere). On the native data plane the ingress itself is the datagram
    hook's handler: calling it is ``_on_rtp`` in C, the method below its reference."""

    def __init__(self, unit_id: str, rtcp_ssrc: int, max_bitrate: int, clock: Callable[[], float], *,
                 native: bool = True) -> None:
        super().__init__()
        self.unit_id = unit_id
        self._native = native  # media._dataplane's hooks (else rtp_hooks' Python reference)
        self._rtcp_ssrc = rtcp_ssrc
        self._max_bitrate = max_bitrate
        self._clock = clock
        self._by_pt: dict[int, _Route] = {}
        self._rtx_pt: dict[int, _Route] = {}
        self._routes: dict[str, _Route] = {}
        self._transports: list[RTCDtlsTransport] = []
        self._next_report = 0.0
        self.last_arrival: float | None = None
        self.reports_sent = 0
        self.nacks_sent = 0
        self._closed = False
        self._recovered: asyncio.Event | None = None  # set when nothing is missing, while awaited

    def add(self, kind: str, stream: PacketStream, codec: Any, rtx_payload_types: list[int],
            transport: RTCDtlsTransport, audio_level_id: int | None = None) -> None:
        """Route ``codec.payloadType`` (and its RTX payload types) of ``transport`` to ``stream``."""
        route = _Route(kind, stream, codec, rtp_hooks.rtcp_sender_of(transport, self._native), audio_level_id,
                       nack=any(fb.type == "nack" and not fb.parameter for fb in codec.rtcpFeedback))
        stream.nacks.active = route.nack
        self._routes[kind] = route
        self._by_pt[codec.payloadType] = route
        for pt in rtx_payload_types:
            self._rtx_pt[pt] = route
        if transport not in self._transports:
            self._transports.append(transport)
            rtp_hooks.intercept_rtp(transport, self if self._native else self._on_rtp, self._native)
            rtp_hooks.observe_rtcp(transport, self._on_rtcp)

    async def request_keyframe(self, kind: str = "video") -> bool:
        """PLI to the publisher's ``kind`` stream; sent at its first packet if no SSRC is known yet.
        (A coroutine for the relay's keyframe requester; the work is :meth:`send_pli`.)"""
        return self.send_pli(kind)

    def send_pli(self, kind: str) -> bool:
        route = self._routes.get(kind)
        if route is None:
            return False
        if route.ssrc is None:
            route.pli_pending = True
            return False
        self._send_rtcp(route, bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=self._rtcp_ssrc,
                                                     media_ssrc=route.ssrc)))
        return True

    @property
    def recovering(self) -> bool:
        """Whether a packet is still missing (NACKed, not yet arrived or given up)."""
        return any(r.nack and r.stream.nacks.waiting for r in self._routes.values())

    async def wait_recovered(self, timeout_s: float) -> bool:
        """Wait until nothing is missing (arrived or given up), at most ``timeout_s``; whether it
        came to that."""
        if not self.recovering:
            return True
        self._recovered = asyncio.Event()
        try:
            await asyncio.wait_for(self._recovered.wait(), timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            self._recovered = None

    def _check_recovered(self) -> None:
        if self._recovered is not None and not self.recovering:
            self._recovered.set()

    def silence_s(self) -> float | None:
        """Seconds since the last RTP packet; None before the first."""
        return None if self.last_arrival is None else self._clock() - self.last_arrival

    def _on_rtp(self, data: bytes) -> None:
        view = parse_rtp(data)
        if view is None:
            return
        route = self._by_pt.get(view.payload_type)
        seq, payload = view.sequence_number, view.payload
        if route is None:
            route = self._rtx_pt.get(view.payload_type)
            if route is None:
                return
            original = unwrap_rtx_payload(payload)
            if original is None:
                return
            seq, payload = original
        elif route.ssrc != view.ssrc:
            if route.ssrc is not None:
                self._source_changed(route)
            route.ssrc = view.ssrc
        now = self._clock()
        self.last_arrival = now
        route.count(seq)
        stream = route.stream
        if payload:
            stream.on_packet(seq, view.timestamp, view.marker, payload, now, view.extension_profile, view.extension)
        if route.nack:
            self._tend(route, now)
        if route.pli_pending:
            route.pli_pending = False
            self.send_pli(route.kind)
        if now >= self._next_report:
            self._next_report = now + REPORT_INTERVAL_S
            self._send_reports(now)
        if self._recovered is not None:
            self._check_recovered()

    def _source_changed(self, route: _Route) -> None:
        """The publisher restarted its stream: a new source."""
        logger.info("unit %s: %s SSRC changed", self.unit_id, route.kind)
        route.stream.start_source(route.codec, route.audio_level_id)
        route.received = 0

    def _tend(self, route: _Route, now: float) -> None:
        """The NACK tracker's due tries (as a packet arrives, or on its timer); while something is
        still missing, a timer makes the next try when it is due, whether or not a packet arrives
        by then."""
        nacks = route.stream.nacks
        if nacks.has_work(now):
            self._recover(route, route.stream, now)
        if route.retry is None and nacks.waiting and not self._closed:
            delay = max(0.0, min(nacks.due_at - now, REPORT_INTERVAL_S))
            route.retry = asyncio.get_running_loop().call_later(delay, self._retry, route)

    def _retry(self, route: _Route) -> None:
        route.retry = None
        self._tend(route, self._clock())
        if self._recovered is not None:
            self._check_recovered()

    def close(self) -> None:
        """No more tries: the publisher's session ended."""
        self._closed = True
        for route in self._routes.values():
            if route.retry is not None:
                route.retry.cancel()
                route.retry = None

    def _recover(self, route: _Route, stream: PacketStream, now: float) -> None:
        """NACK what is due; ask for a keyframe if a packet is lost for good."""
        missing = stream.nacks.due(now)
        if missing and route.ssrc is not None:
            nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=self._rtcp_ssrc, media_ssrc=route.ssrc)
            nack.lost = sorted(missing)
            self.nacks_sent += 1
            route.nacked += len(missing)
            self._send_rtcp(route, bytes(nack))
        lost = stream.nacks.take_lost()
        if lost:
            route.lost += len(lost)
            stream.fanout.request_keyframe("packet lost for good upstream")

    def packet_counts(self) -> tuple[int, int]:
        """(lost, received) RTP packets of every stream so far, as a receiver report counts them
        (RFC 3550 A.3: lost = expected - received, duplicates and retransmissions received too);
        a stream's counts start again when its SSRC changes."""
        lost = received = 0
        for r in self._routes.values():
            if r.received:
                lost += max(0, r.cycles + r.max_seq - r.base_seq + 1 - r.received)
                received += r.received
        return lost, received

    def summary(self) -> str:
        """Loss recovery so far, per kind, for the log."""
        return ", ".join(f"{kind}: {r.received} packets, {r.nacked} NACKed, {r.lost} lost for good"
                         if r.nack else f"{kind}: {r.received} packets (no NACK)" for kind, r in self._routes.items())

    def _on_rtcp(self, data: bytes) -> None:
        """Take the publisher's sender reports (NTP ↔ RTP mapping, LSR) from a compound packet."""
        i, n = 0, len(data)
        while i + 4 <= n:
            length = (int.from_bytes(data[i + 2 : i + 4], "big") + 1) * 4
            if data[i + 1] == 200 and i + _SR_HEAD.size <= n:
                _, _, _, ssrc, ntp, rtp_ts = _SR_HEAD.unpack_from(data, i)
                for route in self._routes.values():
                    if route.ssrc == ssrc:
                        route.lsr = (ntp >> 16) & 0xFFFFFFFF
                        route.lsr_at = self._clock()
                        route.stream.on_sender_report(ntp, rtp_ts)
            i += length

    def _send_reports(self, now: float) -> None:
        by_send: dict[Any, list[_Route]] = {}
        for route in self._routes.values():
            if route.ssrc is not None and route.received:
                by_send.setdefault(route.send, []).append(route)
        for routes in by_send.values():
            rr = RtcpRrPacket(ssrc=self._rtcp_ssrc, reports=[r.report(now) for r in routes])
            remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=self._rtcp_ssrc, media_ssrc=0,
                                  fci=pack_remb_fci(self._max_bitrate, [r.ssrc for r in routes if r.ssrc is not None]))
            self.reports_sent += 1
            self._send_rtcp(routes[0], bytes(rr) + bytes(remb))

    def _send_rtcp(self, route: _Route, data: bytes) -> None:
        try:
            route.send(data)
        except ConnectionError:
            pass

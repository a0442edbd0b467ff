"""Peer connections for one publisher or one viewer, wired to a relay :class:`Channel`.

A session answers an offer (no trickle ICE: aiortc puts every candidate in the answer), then
watches itself: a publisher whose media stops for ``timeout_s`` or whose connection fails ends,
and so does a viewer whose connection fails. ``close(reason)`` is idempotent and calls
``on_end(session, reason)`` exactly once.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.exceptions import OperationError
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import SessionDescription

from . import passthrough, rtp_hooks
from .errors import CodecMismatch, SdpError
from .ingress import PublisherIngress
from .packets import IdleTrack, PacketViewer
from .relay import Channel, Fanout
from .rtpext import AUDIO_LEVEL, ExtensionPlan
from .sdp import check_offer

logger = logging.getLogger(__name__)

WATCH_INTERVAL_S = 0.25
CONNECT_GRACE_S = 10.0  # a new publisher may take this long to connect before silence counts
# A publisher's WHIP DELETE waits this long at most for the packets the server is still recovering
# (its last frames, on a lossy link: the NACK tracker gives up after 1 s).
END_SETTLE_S = 1.0


def _rtc_config(ice_servers: list[dict[str, Any]]) -> RTCConfiguration:
    return RTCConfiguration(iceServers=[RTCIceServer(**s) for s in ice_servers])


def _negotiated_codecs(sdp: str) -> dict[str, Any]:
    """First (chosen) codec per kind in our own answer."""
    out: dict[str, Any] = {}
    for media in SessionDescription.parse(sdp).media:
        if media.kind in ("audio", "video") and media.rtp.codecs and media.kind not in out:
            out[media.kind] = media.rtp.codecs[0]
    return out


def _section(sdp: str, mid: str | None) -> Any:
    """The media section ``mid`` of ``sdp`` (aiortc's ``MediaDescription``), or None."""
    return next((m for m in SessionDescription.parse(sdp).media if m.rtp.muxId == mid), None)


def _rtx_payload_types(sdp: str, mid: str | None, payload_type: int) -> list[int]:
    """RTX payload types (RFC 4588) that repair ``payload_type`` in the media section ``mid``."""
    for media in SessionDescription.parse(sdp).media:
        if mid is not None and media.rtp.muxId != mid:
            continue
        return [c.payloadType for c in media.rtp.codecs if c.payloadType is not None
                and c.mimeType.lower().endswith("/rtx") and str(c.parameters.get("apt")) == str(payload_type)]
    return []


@dataclass
class AttachedSources:
    """What :func:`attach_sources` attached: mime type per kind, the receivers of every remote
    track, and the packet engine's ingress (None in the frame engine)."""

    codecs: dict[str, str] = field(default_factory=dict)
    receivers: list[Any] = field(default_factory=list)
    ingress: PublisherIngress | None = None


def attach_sources(channel: Channel, owner_id: str, pc: RTCPeerConnection, tracks: list[MediaStreamTrack],
                   codecs: dict[str, Any]) -> AttachedSources:
    """Make the remote ``tracks`` of ``pc`` the sources of ``channel``'s fanouts, owned by
    ``owner_id``: a publisher's media, or a stream pulled from another node. ``codecs`` is the
    negotiated codec per kind (:func:`_negotiated_codecs`). A track of a codec the relay cannot
    forward is drained (a remote track nobody reads grows without bound, aiortc#554) and not
    attached; keyframe requests of the channel's viewers become PLIs to the sender.

    Call once both descriptions are set, before media flows. Frame engine: each remote track
    feeds its kind's fanout (``media.passthrough``). Packet engine (``channel.engine``): the
    peer's RTP is taken off its DTLS transport (``media.ingress``) and its receivers never see a
    packet.
    """
    out = AttachedSources()
    ingress: PublisherIngress | None = None
    sdp = pc.localDescription.sdp  # an offer or an answer: either carries the negotiated payload types
    for track in tracks:
        receiver = next(r for r in pc.getReceivers() if r.track is track)
        out.receivers.append(receiver)
        codec = codecs.get(track.kind)
        if codec is None or codec.mimeType.lower() not in passthrough.SUPPORTED_MIME_TYPES:
            _drain(pc, track)
            continue
        out.codecs[track.kind] = codec.mimeType
        fanout = channel.fanout(track.kind)
        if channel.engine == "packets":
            transceiver = next(t for t in pc.getTransceivers() if t.receiver is receiver)
            rtp_hooks.drop_bandwidth_estimator(receiver)
            if ingress is None:
                ingress = PublisherIngress(channel.unit_id, rtp_hooks.sender_ssrcs(transceiver.sender)[0],
                                           channel.config.publisher_max_bitrate, fanout.stream.clock,
                                           native=channel.config.native_dataplane)
            section = _section(sdp, transceiver.mid)
            level_id = next((e.id for e in section.rtp.headerExtensions if e.uri == AUDIO_LEVEL), None) \
                if section is not None else None
            stream = fanout.attach_packets(owner_id, codec, functools.partial(ingress.request_keyframe, track.kind),
                                           level_id)
            ingress.add(track.kind, stream, codec, _rtx_payload_types(sdp, transceiver.mid, codec.payloadType),
                        receiver.transport, level_id)
        else:
            if track.kind == "video":
                passthrough.shorten_jitter_buffer(receiver)
            fanout.attach_source(owner_id, track, codec, functools.partial(passthrough.send_pli, receiver))
    out.ingress = ingress
    return out


def _drain(pc: RTCPeerConnection, track: MediaStreamTrack) -> None:
    """Read ``track`` until it ends; the task is cancelled when ``pc`` closes."""
    async def drain() -> None:
        try:
            while True:
                await track.recv()
        except Exception:
            return

    task = asyncio.get_running_loop().create_task(drain())
    pc.on("connectionstatechange", lambda: task.cancel() if pc.connectionState == "closed" else None)


class _Session(abc.ABC):
    role = "session"

    def __init__(self, unit_id: str, pc: RTCPeerConnection, on_end: Callable[[Any, str], None]) -> None:
        self.id = secrets.token_hex(8)
        self.unit_id = unit_id
        self.pc = pc
        self.started_at = time.time()
        self.ended_reason: str | None = None
        self._on_end = on_end
        self._watch: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None

    def _start_watch(self) -> None:
        self._watch = asyncio.get_running_loop().create_task(self._watchdog(), name=f"{self.role}-{self.id}")

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            reason = self._check()
            if reason:
                self._schedule_close(reason)
                return

    def _check(self) -> str | None:
        if self.pc.connectionState in ("failed", "closed"):
            return f"connection {self.pc.connectionState}"
        return None

    def _schedule_close(self, reason: str) -> None:
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self.close(reason))

    async def close(self, reason: str = "closed", settle_s: float = 0.0) -> None:
        """End the session (``settle_s``: see :meth:`PublisherSession.close`; nothing else waits)."""
        if self.ended_reason is not None:
            return
        self.ended_reason = reason
        logger.info("unit %s: %s %s ended: %s", self.unit_id, self.role, self.id, reason)
        current = asyncio.current_task()
        if self._watch is not None and self._watch is not current:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        self._release()
        try:
            await self.pc.close()
        except Exception:  # closing a half-negotiated aiortc peer can raise; it is gone either way
            logger.debug("unit %s: error closing %s %s", self.unit_id, self.role, self.id, exc_info=True)
        self._on_end(self, reason)

    @abc.abstractmethod
    def _release(self) -> None:
        """Give back what the session holds in the relay (sources or subscriptions)."""


class PublisherSession(_Session):
    """One unit publishing into its channel."""

    role = "publisher"

    def __init__(self, unit_id: str, pc: RTCPeerConnection, channel: Channel, timeout_s: float,
                 on_end: Callable[[Any, str], None]) -> None:
        super().__init__(unit_id, pc, on_end)
        self.channel = channel
        self.timeout_s = timeout_s
        self.codecs: dict[str, str] = {}  # kind -> mime type
        self.receivers: list[Any] = []
        self.ingress: PublisherIngress | None = None

    @classmethod
    async def accept(
        cls,
        *,
        unit_id: str,
        offer_sdp: str,
        channel: Channel,
        ice_servers: list[dict[str, Any]],
        timeout_s: float,
        on_end: Callable[[Any, str], None],
    ) -> tuple["PublisherSession", str]:
        check_offer(offer_sdp, "publish")
        pc = RTCPeerConnection(_rtc_config(ice_servers))
        session = cls(unit_id, pc, channel, timeout_s, on_end)
        remote: list[MediaStreamTrack] = []
        pc.on("track", remote.append)  # must be registered before setRemoteDescription
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises assorted errors on offers it cannot take
            await _close_refused(pc)
            raise SdpError(f"offer rejected: {exc.__class__.__name__}: {exc}") from exc
        attached = attach_sources(channel, session.id, pc, remote, _negotiated_codecs(pc.localDescription.sdp))
        session.codecs, session.receivers, session.ingress = attached.codecs, attached.receivers, attached.ingress
        if not session.codecs:
            await _close_refused(pc)
            raise SdpError("offer has no audio or video the relay can forward")
        session._start_watch()
        logger.info("unit %s: publisher %s accepted (%s)", unit_id, session.id, session.codecs)
        return session, pc.localDescription.sdp

    def _check(self) -> str | None:
        reason = super()._check()
        if reason:
            return reason
        silence = self.media_silence_s()
        if silence > self.timeout_s:
            return f"no media for {silence:.1f} s"
        return None

    def media_silence_s(self) -> float:
        """Seconds without RTP packets; before the first one, time since the answer minus a
        connection grace of ``CONNECT_GRACE_S`` (ICE and DTLS through TURN over 4G take a while)."""
        if self.ingress is not None:
            silence = self.ingress.silence_s()
        else:
            silence = passthrough.packet_silence_s(self.receivers)
        if silence is None:
            return max(0.0, time.time() - self.started_at - CONNECT_GRACE_S)
        return silence

    async def packet_counts(self) -> tuple[int, int] | None:
        """(lost, received) RTP packets so far, as receiver reports count them: from the packet
        engine's ingress, else from aiortc's receivers; None if the session ended meanwhile."""
        if self.ingress is not None:
            return self.ingress.packet_counts()
        try:
            report = await self.pc.getStats()
        except Exception:  # the session ended while we asked
            return None
        lost = received = 0
        for stat in report.values():
            if getattr(stat, "type", "") == "inbound-rtp":
                lost += int(getattr(stat, "packetsLost", 0) or 0)
                received += int(getattr(stat, "packetsReceived", 0) or 0)
        return lost, received

    async def close(self, reason: str = "closed", settle_s: float = 0.0) -> None:
        """End the session; ``settle_s``: first wait up to this long until no packet it NACKed is
        still missing (the last frames before a WHIP ``DELETE``). The frame engine has no ingress:
        aiortc's receivers recover on their own."""
        if settle_s > 0 and self.ended_reason is None and self.ingress is not None:
            await self.ingress.wait_recovered(settle_s)
        await super().close(reason)

    def _release(self) -> None:
        for fanout in self.channel.fanouts:
            fanout.detach_source(self.id)
        if self.ingress is not None:
            self.ingress.close()
            logger.info("unit %s: publisher %s: %s", self.unit_id, self.id, self.ingress.summary())


class ViewerSession(_Session):
    """One viewer (console tile, WHEP client) attached to a channel across publisher reconnects."""

    role = "viewer"

    def __init__(self, unit_id: str, pc: RTCPeerConnection, on_end: Callable[[Any, str], None],
                 viewer: str) -> None:
        super().__init__(unit_id, pc, on_end)
        self.viewer = viewer
        self.tracks: list[MediaStreamTrack] = []
        self.packet_viewers: list[PacketViewer] = []
        self._rtcp_taken: list[Any] = []  # transports whose SRTCP is taken as it arrives (rtp_hooks.intercept_rtp)

    @classmethod
    async def accept(
        cls,
        *,
        unit_id: str,
        offer_sdp: str,
        channel: Channel,
        ice_servers: list[dict[str, Any]],
        on_end: Callable[[Any, str], None],
        viewer: str = "",
    ) -> tuple["ViewerSession", str]:
        summary = check_offer(offer_sdp, "view")
        pc = RTCPeerConnection(_rtc_config(ice_servers))
        session = cls(unit_id, pc, on_end, viewer)
        by_packets: list[tuple[Fanout, Any]] = []
        try:
            for media in summary.media:
                fanout = channel.fanout(media.kind)
                if fanout.codec is None or media.direction not in ("recvonly", "sendrecv"):
                    pc.addTransceiver(media.kind, direction="inactive")
                    continue
                packets = channel.engine == "packets"
                track = IdleTrack(media.kind) if packets else fanout.subscribe()
                session.tracks.append(track)
                transceiver = pc.addTransceiver(track, direction="sendonly")
                transceiver.setCodecPreferences(_preferences_for(fanout))
                passthrough.on_keyframe_request(
                    transceiver.sender, functools.partial(fanout.request_keyframe, "viewer PLI/FIR")
                )
                if packets:
                    by_packets.append((fanout, transceiver))
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            for fanout, transceiver in by_packets:
                session._subscribe_packets(fanout, transceiver)
        except OperationError as exc:
            session._release()
            await _close_refused(pc)
            mimes = ", ".join(f.mime_type for f in channel.fanouts if f.mime_type)
            raise CodecMismatch(f"viewer cannot receive what unit {unit_id} sends ({mimes}): {exc}") from exc
        except Exception as exc:  # aiortc raises assorted errors on offers it cannot take
            session._release()
            await _close_refused(pc)
            raise SdpError(f"offer rejected: {exc.__class__.__name__}: {exc}") from exc
        session._start_watch()
        logger.info("unit %s: viewer %s (%s) attached", unit_id, session.id, viewer or "anonymous")
        return session, pc.localDescription.sdp

    def _subscribe_packets(self, fanout: Fanout, transceiver: Any) -> None:
        """Packet engine: this viewer's sender gets ``fanout``'s packets, rewritten for it."""
        sender = transceiver.sender
        rtp_hooks.drop_bandwidth_estimator(transceiver.receiver)  # a send-only transceiver's: never used
        section = _section(self.pc.localDescription.sdp, transceiver.mid)
        if section is None:
            raise SdpError(f"the answer has no media section {transceiver.mid}")
        payload_type = section.rtp.codecs[0].payloadType
        if payload_type is None:
            raise SdpError("the answer has no payload type for its codec")
        rtx = _rtx_payload_types(self.pc.localDescription.sdp, transceiver.mid, payload_type)
        ssrc, rtx_ssrc = rtp_hooks.sender_ssrcs(sender)
        transport = sender.transport

        def connected() -> bool:
            return bool(transport.state == "connected")

        native = fanout.config.native_dataplane
        viewer = PacketViewer(fanout.stream, rtp_hooks.rtp_sender_of(transport, native),
                              connected, ssrc=ssrc,
                              payload_type=payload_type, rtx_ssrc=rtx_ssrc, rtx_payload_type=rtx[0] if rtx else None,
                              plan=ExtensionPlan.negotiated(section.rtp.headerExtensions, transceiver.mid))
        if transport not in self._rtcp_taken:  # its NACKs, PLIs and reports, as they arrive
            self._rtcp_taken.append(transport)
            rtp_hooks.intercept_rtp(transport, None, native)
        rtp_hooks.on_retransmit(sender, viewer.retransmit)
        rtp_hooks.on_sender_report(sender, viewer.sender_info, rtp_hooks.rtcp_sender_of(transport, native))
        fanout.stream.subscribe(viewer)
        self.packet_viewers.append(viewer)
        # No keyframe request here: ICE and DTLS are not up yet, and a keyframe now would pass
        # before the viewer can take it; the PacketViewer asks when its first packet finds it
        # connected. Asked here as well, that request held the one that counts back by the
        # coalescing interval (pli_min_interval_s): a late viewer's first frame took p50 0.15 s.

    def _release(self) -> None:
        for viewer in self.packet_viewers:
            viewer.stream.unsubscribe(viewer)
            logger.info("unit %s: viewer %s %s: %d packets, %d retransmitted, %d NACKs suppressed (%d repeated, "
                        "%d over budget), %d NACKed packets not in the cache", self.unit_id, self.id, viewer.kind,
                        viewer.packets, viewer.retransmitted, viewer.limit.suppressed, viewer.limit.repeats,
                        viewer.limit.over_budget, viewer.nack_misses)
        for track in self.tracks:
            track.stop()


async def _close_refused(pc: RTCPeerConnection) -> None:
    """Close the peer of a refused offer. aiortc may fail to close a peer it half built from a
    hostile offer (a transceiver without a transport); it holds nothing yet, so that is logged
    at debug level and the refusal stands."""
    try:
        await pc.close()
    except Exception:
        logger.debug("closing the peer of a refused offer failed", exc_info=True)


def _preferences_for(fanout: Fanout) -> list[Any]:
    """Our sender capabilities that match the publisher's codec exactly, plus RTX for video."""
    caps = RTCRtpSender.getCapabilities(fanout.kind).codecs
    want = fanout.codec
    chosen = [
        c for c in caps
        if c.mimeType.lower() == want.mimeType.lower()
        and all(c.parameters.get(k) == want.parameters.get(k) for k in ("packetization-mode", "profile-level-id")
                if k in want.parameters)
    ]
    if fanout.kind == "video":
        chosen += [c for c in caps if c.mimeType.lower() == "video/rtx"]
    return chosen

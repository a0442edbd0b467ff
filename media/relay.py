"""Zero-transcode relay: encoded frames from one publisher fanned out to many viewers.

One :class:`Channel` per unit lives as long as the server; it outlives publisher reconnects so
viewers stay attached and resume on the same peer connection. Each channel has a :class:`Fanout`
per kind (video, audio). A fanout reads ``av.Packet`` objects from the publisher's remote track
(see :mod:`media.passthrough`), rebases their timestamps so they stay monotonic across
reconnects, and offers each to every :class:`ForwardTrack` (one per viewer and kind).

A viewer never slows anyone else down: its queue is bounded; when it overflows the viewer's
queue is emptied and it waits for the next keyframe (which is requested from the publisher).
Keyframe requests from viewers, new subscriptions and the periodic timer are coalesced to at
most one PLI per ``pli_min_interval_s``, and none is ever lost, only delayed. A PLI is one RTCP
packet and a lossy link may drop it, or the keyframe it brings: until a keyframe arrives, the
request is sent again every ``KEYFRAME_RETRY_S`` (checked as media arrives, so without a task).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.stream import Stream

from .keyframes import is_keyframe
from .loss import RTX_BUDGET_SHARE
from .packets import PacketStream

logger = logging.getLogger(__name__)

KeyframeRequester = Callable[[], Awaitable[Any]]
KEYFRAME_RETRY_S = 0.5  # a PLI not answered by a keyframe within this is sent again (~2 round trips on 4G)
Tap = Callable[["av.Packet[Stream]", bool], None]


@dataclass(frozen=True)
class RelayConfig:
    pli_min_interval_s: float = 0.3
    keyframe_interval_s: float = 4.0
    viewer_queue_frames: int = 30
    engine: str = "frames"  # "packets": forward RTP packets (media.packets); "frames": encoded frames
    publisher_max_bitrate: int = 2_500_000  # packet engine: the REMB every publisher gets (bit/s)
    # packet engine: a viewer's retransmissions cost at most this share of what it is forwarded
    viewer_rtx_share: float = RTX_BUDGET_SHARE
    # packet engine: SRTP, header build and send per packet in C (media._dataplane); False: in Python
    native_dataplane: bool = True


class ForwardTrack(MediaStreamTrack):
    """What one viewer's ``RTCRtpSender`` reads: encoded packets, starting at a keyframe."""

    def __init__(self, fanout: Fanout, max_frames: int) -> None:
        super().__init__()
        self.kind = fanout.kind
        self._fanout = fanout
        self._queue: asyncio.Queue[av.Packet[Stream] | None] = asyncio.Queue(maxsize=max_frames)
        self.need_keyframe = fanout.kind == "video"
        self.frames_sent = 0
        self.overflows = 0
        self._created = time.monotonic()

    def offer(self, packet: av.Packet[Stream], keyframe: bool) -> None:
        if self.need_keyframe:
            if not keyframe:
                return
            self.need_keyframe = False
        try:
            self._queue.put_nowait(packet)
            self._fanout.frames_out += 1
        except asyncio.QueueFull:
            # A slow viewer: drop what it has not taken and restart it at the next keyframe.
            while not self._queue.empty():
                self._queue.get_nowait()
            self.overflows += 1
            self._fanout.overflows += 1
            if self.kind == "video":
                self.need_keyframe = True
                self._fanout.request_keyframe("viewer queue overflow")

    async def recv(self) -> av.Packet[Stream]:
        if self.readyState != "live":
            raise MediaStreamError
        packet = await self._queue.get()
        if packet is None:
            raise MediaStreamError
        self.frames_sent += 1
        if self.frames_sent == 1:
            self._fanout.first_frames.append(time.monotonic() - self._created)
        return packet

    def stop(self) -> None:
        if self.readyState == "live":
            self._fanout.unsubscribe(self)
            try:
                self._queue.put_nowait(None)
            except asyncio.QueueFull:
                self._queue.get_nowait()
                self._queue.put_nowait(None)
        super().stop()


class Fanout:
    """One kind of media of one unit: the current source, its codec, and the viewers."""

    def __init__(self, unit_id: str, kind: str, config: RelayConfig, clock: Callable[[], float]) -> None:
        self.unit_id = unit_id
        self.kind = kind
        self.config = config
        self._clock = clock
        self.mime_type: str | None = None  # e.g. "video/VP8" of the current (or last) source
        self.codec: Any = None  # RTCRtpCodecParameters negotiated with the publisher
        self.owner: str | None = None  # publisher session id that feeds this fanout
        self.viewers: set[ForwardTrack] = set()
        self.taps: list[Tap] = []
        # Cumulative counts for the node's metrics: frames and bytes in, frames handed to viewers,
        # viewer queue overflows, keyframe requests sent to the publisher.
        self.frames_in = 0
        self.keyframes_in = 0
        self.bytes_in = 0
        self.frames_out = 0
        self.overflows = 0
        self.plis_sent = 0
        # Seconds from a viewer's subscription to its first frame (a keyframe), newest last; the
        # node's metrics take them at each scrape.
        self.first_frames: collections.deque[float] = collections.deque(maxlen=1000)
        self.last_packet_at: float | None = None
        self.source_attached_at: float | None = None
        self._pump: asyncio.Task[None] | None = None
        self._requester: KeyframeRequester | None = None
        self._last_pli_at = float("-inf")
        self._pli_pending: asyncio.TimerHandle | None = None
        # A PLI was sent and no keyframe arrived since: checked by keyframe_overdue() as media arrives.
        self.keyframe_awaited = False
        self._pli_tasks: set[asyncio.Future[Any]] = set()
        self._out_last_pts: int | None = None
        self._offset = 0
        self._rebase = False
        self._clock_rate = 90000
        self.stream = PacketStream(self, clock)  # the packet engine's side of this fanout
        self._packet_source = False

    # source ------------------------------------------------------------------------------
    def attach_source(
        self, owner: str, track: MediaStreamTrack, codec: Any, request_keyframe: KeyframeRequester
    ) -> None:
        """Feed this fanout from ``track`` (yielding ``av.Packet``), replacing any previous source."""
        self._take_source(owner, codec, request_keyframe, packets=False)
        self._rebase = True
        for viewer in self.viewers:
            viewer.need_keyframe = self.kind == "video"
        self._pump = asyncio.get_running_loop().create_task(
            self._run(track), name=f"fanout-{self.unit_id}-{self.kind}"
        )
        if self.kind == "video":
            self.request_keyframe("new publisher")

    def attach_packets(self, owner: str, codec: Any, request_keyframe: KeyframeRequester,
                       audio_level_id: int | None = None) -> PacketStream:
        """Packet engine: feed this fanout from RTP packets pushed into the returned stream,
        replacing any previous source (``audio_level_id``: the source's ssrc-audio-level
        extension id, if it negotiated one)."""
        self._take_source(owner, codec, request_keyframe, packets=True)
        self.stream.start_source(codec, audio_level_id)
        if self.kind == "video":
            self.request_keyframe("new publisher")
        return self.stream

    def _take_source(self, owner: str, codec: Any, request_keyframe: KeyframeRequester, *, packets: bool) -> None:
        """What either engine's source takes over from the previous one."""
        self._stop_pump()
        self.owner = owner
        self.codec = codec
        self.mime_type = codec.mimeType
        self._clock_rate = codec.clockRate
        self._requester = request_keyframe
        self._packet_source = packets
        self.source_attached_at = self._clock()

    def detach_source(self, owner: str) -> bool:
        """Stop reading the source if ``owner`` still owns it. Viewers stay subscribed."""
        if self.owner != owner:
            return False
        self._stop_pump()
        self._packet_source = False
        self.owner = None
        self._requester = None
        return True

    @property
    def viewer_count(self) -> int:
        """Viewers subscribed now, in either engine."""
        return len(self.viewers) + len(self.stream.viewers)

    @property
    def active(self) -> bool:
        return self._packet_source or (self._pump is not None and not self._pump.done())

    def silence_s(self) -> float:
        """Seconds since the last packet (or since the source was attached, if none yet)."""
        refs = [t for t in (self.last_packet_at, self.source_attached_at) if t is not None]
        return self._clock() - max(refs) if refs else float("inf")

    def _stop_pump(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None

    async def _run(self, track: MediaStreamTrack) -> None:
        video = self.kind == "video"
        mime = (self.mime_type or "").lower()
        try:
            while True:
                packet = await track.recv()
                if not isinstance(packet, av.Packet):
                    raise TypeError("the source yields decoded frames: media.passthrough is not installed")
                now = self._clock()
                keyframe = is_keyframe(mime, bytes(packet)) if video else True
                pts = int(packet.pts or 0)
                if self._rebase:
                    self._rebase = False
                    if self._out_last_pts is None:
                        self._offset = 0
                    else:
                        gap = max(1, int((now - (self.last_packet_at or now)) * self._clock_rate))
                        self._offset = self._out_last_pts + gap - pts
                pts += self._offset
                packet.pts = pts
                packet.dts = pts
                self._out_last_pts = pts
                self.last_packet_at = now
                self.frames_in += 1
                self.bytes_in += packet.size
                if keyframe and video:
                    self.keyframe_arrived()
                elif self.keyframe_awaited:
                    self.keyframe_overdue(now)
                for tap in self.taps:
                    tap(packet, keyframe)
                for viewer in tuple(self.viewers):
                    viewer.offer(packet, keyframe)
        except MediaStreamError:
            logger.info("unit %s: %s source ended", self.unit_id, self.kind)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("unit %s: %s fanout failed", self.unit_id, self.kind)

    # viewers -----------------------------------------------------------------------------
    def subscribe(self) -> ForwardTrack:
        track = ForwardTrack(self, self.config.viewer_queue_frames)
        self.viewers.add(track)
        if self.kind == "video":
            self.request_keyframe("new viewer")
        return track

    def unsubscribe(self, track: ForwardTrack) -> None:
        self.viewers.discard(track)

    # keyframes ---------------------------------------------------------------------------
    def request_keyframe(self, reason: str) -> None:
        """Ask the publisher for a keyframe, at most once per ``pli_min_interval_s``; never dropped."""
        if self.kind != "video" or self._pli_pending is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_pli_at + self.config.pli_min_interval_s - self._clock()
        if wait <= 0:
            self._send_pli(reason)
        else:
            self._pli_pending = loop.call_later(wait, self._send_pli, reason)

    def _send_pli(self, reason: str) -> None:
        self._pli_pending = None
        requester = self._requester
        if requester is None:
            return  # no publisher now; a new one gets a request when it attaches
        self._last_pli_at = self._clock()
        self.keyframe_awaited = True
        self.plis_sent += 1
        logger.debug("unit %s: keyframe requested (%s)", self.unit_id, reason)
        task = asyncio.ensure_future(requester())
        self._pli_tasks.add(task)
        task.add_done_callback(self._pli_tasks.discard)

    def keyframe_arrived(self) -> None:
        """A keyframe (its first packet, in the packet engine) came from the publisher."""
        self.keyframes_in += 1
        self.keyframe_awaited = False

    def keyframe_overdue(self, now: float) -> None:
        """Media arrived while a keyframe is awaited: ask again if the last PLI is
        ``KEYFRAME_RETRY_S`` old (it, or the keyframe, was lost on the way)."""
        if self._pli_pending is None and now - self._last_pli_at >= KEYFRAME_RETRY_S:
            self._send_pli("no keyframe since the last request")

    async def close(self) -> None:
        self._stop_pump()
        if self._pli_pending is not None:
            self._pli_pending.cancel()
            self._pli_pending = None
        for task in list(self._pli_tasks):
            task.cancel()
        await asyncio.gather(*self._pli_tasks, return_exceptions=True)
        for viewer in list(self.viewers):
            viewer.stop()
        self.stream.drop_viewers()
        self._packet_source = False


class Channel:
    """Everything the relay knows about one unit."""

    def __init__(self, unit_id: str, config: RelayConfig, clock: Callable[[], float]) -> None:
        self.unit_id = unit_id
        self.engine = config.engine
        self.config = config
        self.video = Fanout(unit_id, "video", config, clock)
        self.audio = Fanout(unit_id, "audio", config, clock)

    def fanout(self, kind: str) -> Fanout:
        if kind == "video":
            return self.video
        if kind == "audio":
            return self.audio
        raise ValueError(f"no fanout for kind {kind!r}")

    @property
    def fanouts(self) -> tuple[Fanout, Fanout]:
        return (self.video, self.audio)

    # The recorder's view of a channel (``recordings.source.FrameSource``, matched by shape).
    def add_tap(self, kind: str, tap: Tap) -> None:
        """Call ``tap(packet, keyframe)`` for every packet of ``kind`` from now on, on the loop."""
        self.fanout(kind).taps.append(tap)

    def remove_tap(self, kind: str, tap: Tap) -> None:
        """Stop calling ``tap``; one that is not there is ignored."""
        taps = self.fanout(kind).taps
        if tap in taps:
            taps.remove(tap)

    def request_keyframe(self, reason: str) -> None:
        """Ask the publisher for a video keyframe (coalesced like every other request)."""
        self.video.request_keyframe(reason)

    def silence_s(self) -> float:
        active = [f.silence_s() for f in self.fanouts if f.active]
        return min(active) if active else float("inf")

    async def close(self) -> None:
        await asyncio.gather(self.video.close(), self.audio.close())


class Relay:
    """All channels, and the periodic keyframe timer (segment cuts and patrol switches need one)."""

    def __init__(self, config: RelayConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self.channels: dict[str, Channel] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._closed = False

    def channel(self, unit_id: str) -> Channel:
        ch = self.channels.get(unit_id)
        if ch is None:
            ch = self.channels[unit_id] = Channel(unit_id, self.config, self._clock)
        return ch

    def counters(self) -> dict[str, dict[str, int]]:
        """Cumulative counts by kind (``video``, ``audio``) over every channel, talk-back included:
        ``frames_in``, ``keyframes_in``, ``bytes_in``, ``frames_out``, ``overflows``, ``plis_sent``."""
        names = ("frames_in", "keyframes_in", "bytes_in", "frames_out", "overflows", "plis_sent")
        totals = {kind: dict.fromkeys(names, 0) for kind in ("video", "audio")}
        for ch in self.channels.values():
            for fanout in ch.fanouts:
                for name in names:
                    totals[fanout.kind][name] += getattr(fanout, name)
        return totals

    def take_first_frames(self) -> list[float]:
        """The first-frame delays of viewers (seconds) since the last call, video and audio."""
        out: list[float] = []
        for ch in self.channels.values():
            for fanout in ch.fanouts:
                out.extend(fanout.first_frames)
                fanout.first_frames.clear()
        return out

    def start(self) -> None:
        if self._ticker is None and self.config.keyframe_interval_s > 0:
            self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="relay-keyframe-timer")

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.config.keyframe_interval_s)
            for ch in list(self.channels.values()):
                if ch.video.active:
                    ch.video.request_keyframe("periodic")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        await asyncio.gather(*(ch.close() for ch in self.channels.values()))

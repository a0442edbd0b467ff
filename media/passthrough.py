"""The one place that relies on aiortc internals (pinned by tests/media/test_passthrough.py).

Four hooks make aiortc forward encoded media instead of decoding and re-encoding it:

1. Receiving: ``aiortc.rtcrtpreceiver.decoder_worker`` looks up ``get_decoder`` in its module on
   every codec change. :func:`install` replaces it with :class:`PassthroughDecoder`, which turns each
   complete encoded frame from the jitter buffer into an ``av.Packet`` (pts = RTP timestamp, already
   unwrapped by aiortc's ``TimestampMapper``). Remote tracks then yield packets, not frames. This is
   process-wide: a process that installs it never decodes received media.
2. Sending: ``RTCRtpSender._next_encoded_frame`` packs an ``av.Packet`` without encoding (public
   behaviour of aiortc ≥ 1.10, relied on as is).
3. Loss recovery and frame completion: aiortc's video jitter buffer holds 512 packets, so one
   packet lost for good freezes the picture for ~3.4 s at 1.2 Mbit/s; :func:`shorten_jitter_buffer`
   swaps in one of 128 packets (~0.85 s), which matters on lossy 4G. aiortc's buffer also hands a
   frame on only when the first packet of the next frame arrives, so every frame waits one frame
   interval and a publisher's last frame is never delivered (nor recorded); the swapped-in
   :class:`MarkerJitterBuffer` completes a frame at its RTP marker bit (RFC 7741 §4.1, RFC 6184
   §5.1: set on the last packet of a frame). When aiortc's buffer gives up on a loss (overflow, or
   a retransmission ``MAX_MISORDER`` late resets it) it starts again at whatever packet comes
   next, often in the middle of a frame, and hands on that frame's tail as a frame: on lossy links
   with reordering that put a corrupt "keyframe" into recordings (ffprobe: "Invalid sync code").
   The buffer tags each frame with whether frames before it were skipped and whether its first
   packet starts a frame; :class:`PassthroughDecoder` drops a frame that does not start a frame,
   and every frame after a skip until the next keyframe (no decoder could show them), and asks for
   a keyframe the way a failing decoder does in aiortc (``decoder_worker`` sets its decode-error
   event on ``av.FFmpegError``, and the receiver then sends PLI).
4. Keyframes: a viewer's PLI/FIR ends in ``RTCRtpSender._send_keyframe``, which only sets a flag the
   pack path ignores; :func:`on_keyframe_request` replaces it per sender instance. Asking a publisher
   for a keyframe uses ``RTCRtpReceiver._send_rtcp_pli(ssrc)`` (:func:`send_pli`).
"""

from __future__ import annotations

import fractions
import logging
from typing import Any, Callable

import av
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc import rtcrtpreceiver as _receiver_module
from aiortc.codecs.base import Decoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from .keyframes import is_keyframe

logger = logging.getLogger(__name__)

SUPPORTED_MIME_TYPES = frozenset({"video/vp8", "video/h264", "audio/opus"})


REASK_FRAMES = 10  # while frames are dropped, ask for a keyframe again every this many (~0.3 s at 30 fps)


class FrameLost(av.InvalidDataError):
    """Raised by :class:`PassthroughDecoder` at the first frame it drops and every
    :data:`REASK_FRAMES`-th after it: aiortc's decoder thread logs a warning and the receiver then
    asks the publisher for a keyframe (PLI), as for a frame a real decoder failed on."""

    def __init__(self, what: str) -> None:
        super().__init__(1094995529, what)  # AVERROR_INVALIDDATA


def starts_frame(mime_type: str, payload: bytes) -> bool:
    """Whether an RTP payload (with its payload descriptor) is the first packet of a frame: VP8
    (RFC 7741 §4.2) S bit set and partition index 0; H.264 (RFC 6184 §5.8) not the middle or end of
    a fragmented NAL unit. Other codecs: every packet starts a frame."""
    if not payload:
        return False
    if mime_type == "video/vp8":
        return bool(payload[0] & 0x10) and (payload[0] & 0x07) == 0
    if mime_type == "video/h264":
        if payload[0] & 0x1F in (28, 29):  # FU-A, FU-B
            return len(payload) > 1 and bool(payload[1] & 0x80)
    return True


class TaggedFrame(JitterFrame):
    """A frame from :class:`MarkerJitterBuffer`: the RTP payload head of its first packet
    (descriptor included) and whether frames before it were skipped."""

    def __init__(self, data: bytes, timestamp: int, first_payload: bytes, after_gap: bool) -> None:
        super().__init__(data, timestamp)
        self.first_payload = first_payload
        self.after_gap = after_gap


class PassthroughDecoder(Decoder):
    """Hands each encoded frame on as an ``av.Packet`` on the codec's RTP clock.

    Video frames a decoder could not show are dropped: a frame that is only the tail of one (its
    first packet was lost for good), and every frame after skipped frames until a keyframe. The
    first drop of each such run, and every ``REASK_FRAMES``-th after it, raises :class:`FrameLost`,
    so the publisher is asked for a keyframe.
    The first video frame must be a keyframe too (the first packets may be the ones lost).
    Frames from a buffer other than :class:`MarkerJitterBuffer` (not :class:`TaggedFrame`) carry no
    tags: only the keyframe rule applies to them.
    """

    def __init__(self, codec: RTCRtpCodecParameters) -> None:
        self.mime_type = codec.mimeType.lower()
        self.time_base = fractions.Fraction(1, codec.clockRate)
        self._video = self.mime_type.startswith("video/")
        self._broken = self._video  # no keyframe yet, or frames were lost since the last one
        self._dropped = 0  # frames dropped since the last keyframe

    def decode(self, encoded_frame: Any) -> list[Any]:
        if self._video:
            if isinstance(encoded_frame, TaggedFrame):
                if not starts_frame(self.mime_type, encoded_frame.first_payload):
                    self._broken = True
                    return self._drop("the tail of a frame whose first packet was lost")
                if encoded_frame.after_gap:
                    self._broken = True
            if self._broken:
                if not is_keyframe(self.mime_type, encoded_frame.data):
                    return self._drop("a frame after lost frames, before a keyframe")
                self._broken = False
                self._dropped = 0
        packet = av.Packet(encoded_frame.data)
        packet.pts = encoded_frame.timestamp
        packet.dts = encoded_frame.timestamp
        packet.time_base = self.time_base
        return [packet]

    def _drop(self, what: str) -> list[Any]:
        # Asked again every REASK_FRAMES drops: a PLI is one RTCP packet, and a lost one would
        # otherwise leave the picture frozen until the publisher's next keyframe of its own.
        if self._dropped % REASK_FRAMES == 0:
            self._dropped += 1
            raise FrameLost(f"dropped {what}; asking for a keyframe")
        self._dropped += 1
        return []


def _passthrough_get_decoder(codec: RTCRtpCodecParameters) -> Decoder:
    if codec.mimeType.lower() not in SUPPORTED_MIME_TYPES:
        raise ValueError(f"No pass-through for MIME type `{codec.mimeType}`")
    return PassthroughDecoder(codec)


def install() -> None:
    """Make every ``RTCRtpReceiver`` in this process yield encoded packets. Idempotent."""
    name = "get_decoder"  # a module global of aiortc.rtcrtpreceiver, imported from aiortc.codecs
    if getattr(_receiver_module, name, None) is not _passthrough_get_decoder:
        if not callable(getattr(_receiver_module, name, None)):
            raise RuntimeError("aiortc.rtcrtpreceiver.get_decoder is gone: media/passthrough.py needs updating")
        setattr(_receiver_module, name, _passthrough_get_decoder)
        logger.info("aiortc receivers now forward encoded frames (pass-through decoder installed)")


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` when the remote viewer of ``sender`` sends PLI or FIR."""
    name = "_send_keyframe"
    if not callable(getattr(sender, name, None)):
        raise RuntimeError("RTCRtpSender._send_keyframe is gone: media/passthrough.py needs updating")
    setattr(sender, name, callback)  # on this instance only, shadowing the method


async def send_pli(receiver: RTCRtpReceiver) -> bool:
    """Ask the remote publisher of ``receiver`` for a keyframe. False if no SSRC is known yet."""
    sources = receiver.getSynchronizationSources()
    for source in sources:
        await receiver._send_rtcp_pli(source.source)
    return bool(sources)


VIDEO_JITTER_PACKETS = 128


class MarkerJitterBuffer(JitterBuffer):
    """aiortc's video jitter buffer, but a frame is complete at its marker bit.

    Without the marker (lost last packet) a frame still completes, as in aiortc, when a packet of
    the next frame follows it contiguously. Frames are handed on as :class:`TaggedFrame` for
    :class:`PassthroughDecoder`.
    """

    _next_seq: int | None = None  # the sequence number after the last frame handed on

    def _frame(self, packets: list[Any], timestamp: int) -> TaggedFrame:
        first = packets[0].sequence_number
        frame = TaggedFrame(b"".join(p._data for p in packets), timestamp, bytes(packets[0].payload[:2]),
                            after_gap=self._next_seq is not None and first != self._next_seq)
        self._next_seq = (packets[-1].sequence_number + 1) & 0xFFFF
        return frame

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        origin = self._origin
        if origin is None:  # nothing buffered yet
            return None
        packets: list[Any] = []  # RtpPacket with the depacketized payload in ``_data``
        timestamp = None
        for count in range(self.capacity):
            packet = self._packets[(origin + count) % self._capacity]
            if packet is None:
                return None
            if timestamp is None:
                timestamp = packet.timestamp
            elif packet.timestamp != timestamp:
                self.remove(count)
                return self._frame(packets, timestamp)
            packets.append(packet)
            if packet.marker:
                self.remove(count + 1)
                return self._frame(packets, timestamp)
        return None


def shorten_jitter_buffer(receiver: RTCRtpReceiver, packets: int = VIDEO_JITTER_PACKETS) -> None:
    """Give a video receiver a shorter jitter buffer that completes frames at the marker bit;
    call before any packet arrives."""
    name = "_RTCRtpReceiver__jitter_buffer"
    current = getattr(receiver, name, None)
    if not isinstance(current, JitterBuffer):
        raise RuntimeError("RTCRtpReceiver's jitter buffer moved: media/passthrough.py needs updating")
    setattr(receiver, name, MarkerJitterBuffer(capacity=min(packets, current.capacity), is_video=True))


def packet_silence_s(receivers: list[RTCRtpReceiver]) -> float | None:
    """Seconds since any RTP packet reached these receivers; None before the first packet.

    Counts packets, not frames: a jitter buffer waiting out a loss emits no frames while packets
    still flow, and that publisher is alive.
    """
    import datetime as dt

    latest = None
    for receiver in receivers:
        for source in receiver.getSynchronizationSources():
            if latest is None or source.timestamp > latest:
                latest = source.timestamp
    if latest is None:
        return None
    return (dt.datetime.now(dt.timezone.utc) - latest).total_seconds()

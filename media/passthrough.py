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
   §5.1: set on the last packet of a frame).
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

logger = logging.getLogger(__name__)

SUPPORTED_MIME_TYPES = frozenset({"video/vp8", "video/h264", "audio/opus"})


class PassthroughDecoder(Decoder):
    """Hands each encoded frame on as an ``av.Packet`` on the codec's RTP clock."""

    def __init__(self, codec: RTCRtpCodecParameters) -> None:
        self.mime_type = codec.mimeType.lower()
        self.time_base = fractions.Fraction(1, codec.clockRate)

    def decode(self, encoded_frame: Any) -> list[Any]:
        packet = av.Packet(encoded_frame.data)
        packet.pts = encoded_frame.timestamp
        packet.dts = encoded_frame.timestamp
        packet.time_base = self.time_base
        return [packet]


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
    the next frame follows it contiguously.
    """

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
                return JitterFrame(data=b"".join(p._data for p in packets), timestamp=timestamp)
            packets.append(packet)
            if packet.marker:
                self.remove(count + 1)
                return JitterFrame(data=b"".join(p._data for p in packets), timestamp=timestamp)
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

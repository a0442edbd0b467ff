"""Pins the aiortc internals media/passthrough.py relies on: an aiortc upgrade that changes any
of them fails here, loudly, before the relay silently starts decoding or losing keyframes."""

from __future__ import annotations

import fractions
import inspect
from typing import Any, Callable

import aiortc
import av
from aiortc import RTCRtpReceiver, RTCRtpSender, rtcrtpreceiver
from aiortc.codecs import get_encoder
from aiortc.codecs.base import Decoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media import passthrough


def receivers_get_decoder() -> Callable[[RTCRtpCodecParameters], Decoder]:
    """The ``get_decoder`` that ``decoder_worker`` looks up in its module (what install() swaps)."""
    lookup: Callable[[RTCRtpCodecParameters], Decoder] = vars(rtcrtpreceiver)["get_decoder"]
    return lookup


def test_aiortc_version_is_the_one_the_relay_was_verified_with() -> None:
    assert aiortc.__version__ == "1.16.0", "re-verify media/passthrough.py, then update this pin and pyproject"


def test_decoder_worker_looks_up_get_decoder_in_its_module() -> None:
    src = inspect.getsource(rtcrtpreceiver.decoder_worker)
    assert "get_decoder(codec)" in src and "decoder.decode(encoded_frame)" in src
    assert "output_q.put(frame)" in src


def test_install_swaps_the_receivers_decoder_for_pass_through() -> None:
    passthrough.install()
    passthrough.install()  # idempotent
    get_decoder = receivers_get_decoder()
    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    dec = get_decoder(codec)
    [packet] = dec.decode(JitterFrame(data=b"\x10\x02\x00abc", timestamp=123456))
    assert isinstance(packet, av.Packet)
    assert bytes(packet) == b"\x10\x02\x00abc"
    assert packet.pts == 123456 and packet.time_base == fractions.Fraction(1, 90000)
    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
    [opus_packet] = get_decoder(opus).decode(JitterFrame(data=b"x", timestamp=960))
    assert opus_packet.time_base == fractions.Fraction(1, 48000)


def test_sender_packs_av_packets_without_encoding() -> None:
    src = inspect.getsource(RTCRtpSender._next_encoded_frame)
    assert "isinstance(data, Frame)" in src and ".pack(data)" in src
    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    packet = av.Packet(b"\x10\x02\x00" + b"x" * 3000)
    packet.pts = 9000
    packet.time_base = fractions.Fraction(1, 90000)
    payloads, timestamp = get_encoder(codec).pack(packet)
    assert timestamp == 9000 and len(payloads) >= 3


def test_keyframe_hooks_exist() -> None:
    src = inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    assert "self._send_keyframe()" in src, "viewer PLI/FIR no longer reaches _send_keyframe"
    assert callable(getattr(RTCRtpReceiver, "_send_rtcp_pli", None))
    assert "getSynchronizationSources" in dir(RTCRtpReceiver)


def test_receiver_jitter_buffer_can_be_shortened() -> None:
    from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport
    from aiortc.rtcicetransport import RTCIceGatherer, RTCIceTransport

    transport = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()])
    receiver = RTCRtpReceiver("video", transport)
    passthrough.shorten_jitter_buffer(receiver, 128)
    jitter_buffer: JitterBuffer = vars(receiver)["_RTCRtpReceiver__jitter_buffer"]
    assert jitter_buffer.capacity == 128
    assert passthrough.packet_silence_s([receiver]) is None


def _rtp(seq: int, ts: int, payload: bytes, marker: bool) -> Any:
    from aiortc.rtp import RtpPacket

    p: Any = RtpPacket(payload_type=96, sequence_number=seq, timestamp=ts, marker=int(marker))
    p._data = payload  # what the receiver depacketized
    return p


def test_marker_jitter_buffer_completes_a_frame_at_its_marker_bit() -> None:
    jb = passthrough.MarkerJitterBuffer(capacity=128, is_video=True)
    assert jb.add(_rtp(10, 3000, b"a1", False)) == (False, None)
    _, frame = jb.add(_rtp(11, 3000, b"a2", True))
    assert frame is not None and frame.data == b"a1a2" and frame.timestamp == 3000
    # Out of order within a frame: complete once the gap is filled.
    assert jb.add(_rtp(13, 6000, b"b2", True))[1] is None
    _, frame = jb.add(_rtp(12, 6000, b"b1", False))
    assert frame is not None and frame.data == b"b1b2"
    # A frame whose marker packet was lost still completes when the next frame follows.
    assert jb.add(_rtp(14, 9000, b"c1", False))[1] is None
    _, frame = jb.add(_rtp(15, 12000, b"d1", False))
    assert frame is not None and frame.data == b"c1" and frame.timestamp == 9000

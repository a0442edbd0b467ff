"""Pins the aiortc internals media/passthrough.py relies on: an aiortc upgrade that changes any
of them fails here, loudly, before the relay silently starts decoding or losing keyframes."""

from __future__ import annotations

import fractions
import inspect
from typing import Any, Callable

import aiortc
import av
import pytest
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


def test_a_decoder_error_makes_the_receiver_ask_for_a_keyframe() -> None:
    """What PassthroughDecoder's FrameLost relies on: the decoder thread survives an FFmpegError
    and flags it, and the receiver sends PLI for a flagged video error."""
    worker = inspect.getsource(rtcrtpreceiver.decoder_worker)
    assert "except av.FFmpegError" in worker and "decode_error.set()" in worker and "continue" in worker
    handler = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    assert "self.__decoder_error.is_set()" in handler and "pli_flag = True" in handler
    assert isinstance(passthrough.FrameLost("x"), av.FFmpegError)


def _vp8(seq: int, ts: int, data: bytes, marker: bool, start: bool) -> Any:
    """A VP8 RTP packet: payload descriptor (S bit = ``start``, partition 0) then ``data``."""
    p = _rtp(seq, ts, data, marker)
    p.payload = bytes([0x10 if start else 0x00]) + data
    return p


KEY, DELTA = b"\x10\x02\x00key", b"\x11\x02\x00delta"  # VP8 frame tags: bit 0 is 0 for a keyframe


def test_marker_jitter_buffer_tags_skipped_frames_and_frame_starts() -> None:
    jb = passthrough.MarkerJitterBuffer(capacity=16, is_video=True)
    _, frame = jb.add(_vp8(100, 3000, KEY, True, True))
    assert isinstance(frame, passthrough.TaggedFrame) and frame.first_payload[0] & 0x10 and not frame.after_gap
    _, frame = jb.add(_vp8(101, 6000, DELTA, True, True))
    assert isinstance(frame, passthrough.TaggedFrame) and not frame.after_gap
    # Two-packet frames from 102 on; 102 is lost for good. The buffer overflows and starts again
    # at 103, the second packet of that frame: handed on, tagged as a skip and not a frame start.
    for seq in range(103, 103 + 16):
        _, frame = jb.add(_vp8(seq, 9000 + 3000 * ((seq - 102) // 2), DELTA, seq % 2 == 1, seq % 2 == 0))
        if frame is not None:
            break
    assert isinstance(frame, passthrough.TaggedFrame) and frame.after_gap
    assert not passthrough.starts_frame("video/vp8", frame.first_payload)


def test_passthrough_decoder_drops_frames_no_decoder_could_show() -> None:
    decoder = passthrough.PassthroughDecoder(RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000,
                                                                   payloadType=96))

    def frame(data: bytes, ts: int, start: bool = True, after_gap: bool = False) -> passthrough.TaggedFrame:
        return passthrough.TaggedFrame(data, ts, bytes([0x10 if start else 0x00]) + data[:1], after_gap)

    with pytest.raises(passthrough.FrameLost):  # no keyframe yet: ask for one
        decoder.decode(frame(DELTA, 0))
    for k in range(1, passthrough.REASK_FRAMES):
        assert decoder.decode(frame(DELTA, 3000 * k)) == []  # asked already
    with pytest.raises(passthrough.FrameLost):  # still none: ask again (the PLI may have been lost)
        decoder.decode(frame(DELTA, 3000 * passthrough.REASK_FRAMES))
    assert bytes(decoder.decode(frame(KEY, 6000))[0]) == KEY
    assert bytes(decoder.decode(frame(DELTA, 9000))[0]) == DELTA
    with pytest.raises(passthrough.FrameLost):  # the tail of a frame
        decoder.decode(frame(KEY, 12000, start=False))
    assert decoder.decode(frame(DELTA, 15000)) == []  # it referenced the lost frame
    assert bytes(decoder.decode(frame(KEY, 18000, after_gap=True))[0]) == KEY  # a keyframe after a skip shows
    with pytest.raises(passthrough.FrameLost):  # a delta after a skip does not
        decoder.decode(frame(DELTA, 21000, after_gap=True))
    opus = passthrough.PassthroughDecoder(RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000,
                                                                channels=2, payloadType=111))
    assert len(opus.decode(frame(b"x", 960, start=False, after_gap=True))) == 1  # audio is never held back

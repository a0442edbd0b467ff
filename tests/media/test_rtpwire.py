"""RTP headers read and written on raw bytes, checked against aiortc's own RtpPacket."""

from __future__ import annotations

from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from media.rtpwire import build_rtp, parse_rtp, seq_delta, unwrap_rtx_payload


def test_parse_skips_csrcs_extensions_and_padding_as_aiortc_does() -> None:
    ext = HeaderExtensionsMap()
    packet = RtpPacket(payload_type=96, marker=1, sequence_number=65535, timestamp=0xFFFFFFF0, ssrc=0x12345678,
                       payload=b"payload-bytes")
    packet.padding_size = 4
    packet.csrc = [1, 2]
    packet.extensions.abs_send_time = 0x123456
    packet.extensions.mid = "0"
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters

    ext.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
        RTCRtpHeaderExtensionParameters(id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"),
    ]))
    data = packet.serialize(ext)
    view = parse_rtp(data)
    assert view is not None
    assert (view.payload_type, view.marker, view.sequence_number, view.timestamp, view.ssrc) == (
        96, True, 65535, 0xFFFFFFF0, 0x12345678)
    assert view.payload == b"payload-bytes"
    assert parse_rtp(b"\x80\x60\x00") is None and parse_rtp(b"\x00" * 12) is None


def test_built_packets_parse_back_in_aiortc() -> None:
    data = build_rtp(100, False, 70000, 1 << 33, 0xDEADBEEF, b"abc")
    packet = RtpPacket.parse(data)
    assert (packet.payload_type, packet.marker, packet.sequence_number, packet.timestamp, packet.ssrc) == (
        100, 0, 70000 & 0xFFFF, 0, 0xDEADBEEF)
    assert packet.payload == b"abc" and not packet.extensions.mid and not packet.csrc


def test_rtx_payloads_and_sequence_arithmetic() -> None:
    assert unwrap_rtx_payload(b"\x01\x02xyz") == (0x0102, b"xyz")
    assert unwrap_rtx_payload(b"\x01\x02") is None  # padding-only probe
    assert seq_delta(2, 65534) == 4 and seq_delta(65534, 2) == -4 and seq_delta(5, 5) == 0

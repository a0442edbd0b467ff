"""Keyframes told from the bitstream alone: VP8 frame tag, H.264 NAL types."""

from __future__ import annotations

import pytest

from media.keyframes import (
    h264_nal_types,
    h264_payload_has_sps,
    h264_payload_starts_keyframe,
    is_keyframe,
    payload_starts_keyframe,
    vp8_payload_starts_keyframe,
)


def test_is_keyframe_reads_vp8_and_h264_headers() -> None:
    assert is_keyframe("video/vp8", bytes([0x10, 0x02, 0x00]))
    assert not is_keyframe("video/VP8", bytes([0x11, 0x02, 0x00]))
    assert is_keyframe("video/h264", b"\x00\x00\x00\x01\x67\x42\x00\x00\x00\x01\x68\x00\x00\x01\x65")
    assert is_keyframe("video/H264", b"\x00\x00\x01\x65\x88")
    assert not is_keyframe("video/h264", b"\x00\x00\x00\x01\x41\x9a\x00\x00\x01\x41")


def test_h264_nal_types_follow_both_start_code_lengths() -> None:
    assert h264_nal_types(b"\x00\x00\x00\x01\x67\x42\x00\x00\x00\x01\x68\x00\x00\x01\x65") == [7, 8, 5]
    assert h264_nal_types(b"") == [] and h264_nal_types(b"\x00\x00\x01") == []


def test_frames_of_other_kinds_count_as_keyframes() -> None:
    assert is_keyframe("audio/opus", b"\x01")
    assert is_keyframe("video/VP8", b"") is False  # an empty frame is no keyframe


def _payloads(mime: str, frame: bytes) -> list[bytes]:
    """The RTP payloads aiortc's own packetizer makes of one encoded frame."""
    import fractions

    import av
    from aiortc.codecs import get_encoder
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    params: dict[str, int | str | None] = {"packetization-mode": "1"} if mime == "video/H264" else {}
    codec = RTCRtpCodecParameters(mimeType=mime, clockRate=90000, payloadType=96, parameters=params)
    packet = av.Packet(frame)
    packet.pts = 0
    packet.time_base = fractions.Fraction(1, 90000)
    payloads, _ = get_encoder(codec).pack(packet)
    return list(payloads)


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_packets_that_start_a_keyframe_are_told_from_the_payload(codec: str, request: pytest.FixtureRequest) -> None:
    loop = request.getfixturevalue(f"{codec}_loop")
    mime = loop.mime_type
    delta, key = loop.frames[5]
    key_payloads = _payloads(mime, key)
    delta_payloads = _payloads(mime, delta)
    assert len(key_payloads) > 1 and not loop.delta_is_keyframe[5]
    assert payload_starts_keyframe(mime, key_payloads[0])
    # No packet of a delta frame starts a keyframe; in VP8 only the first of a keyframe does (in
    # H.264 the IDR's own first fragment after the SPS/PPS aggregate does too).
    if codec == "vp8":
        assert not any(payload_starts_keyframe(mime, p) for p in key_payloads[1:])
    assert not any(payload_starts_keyframe(mime, p) for p in delta_payloads)


def test_keyframe_starts_in_stap_a_fu_a_and_vp8_extended_descriptors() -> None:
    sps, idr, slice_ = b"\x67\x42\x00\x1f", b"\x65\x88\x84", b"\x41\x9a\x02"
    stap = b"\x18" + len(sps).to_bytes(2, "big") + sps + b"\x00\x04\x68\xce\x3c\x80"
    assert h264_payload_starts_keyframe(stap)
    assert h264_payload_starts_keyframe(bytes([0x7C, 0x85]) + idr[1:])  # FU-A, S bit, type 5
    assert not h264_payload_starts_keyframe(bytes([0x7C, 0x05]) + idr[1:])  # FU-A middle fragment
    assert not h264_payload_starts_keyframe(slice_)
    # VP8 with X, I (15-bit picture id), L and T/K bytes, then a key frame tag.
    assert vp8_payload_starts_keyframe(bytes([0x90, 0xF0, 0x80, 0x01, 0x00, 0x00, 0x10, 0x02]))
    assert not vp8_payload_starts_keyframe(bytes([0x90, 0xF0, 0x80, 0x01, 0x00, 0x00, 0x11, 0x02]))
    assert not vp8_payload_starts_keyframe(bytes([0x80, 0x00, 0x10]))  # S bit unset
    assert payload_starts_keyframe("audio/opus", b"\x01")


def test_an_h264_payload_holding_an_sps_is_told_apart() -> None:
    sps, pps, idr = b"\x67\x42\xc0\x1f", b"\x68\xce\x3c", b"\x65\x88"
    assert h264_payload_has_sps(sps)
    assert h264_payload_has_sps(b"\x18" + len(sps).to_bytes(2, "big") + sps + len(pps).to_bytes(2, "big") + pps)
    assert h264_payload_has_sps(b"\x18" + len(pps).to_bytes(2, "big") + pps + len(sps).to_bytes(2, "big") + sps)
    assert not h264_payload_has_sps(b"\x18" + len(pps).to_bytes(2, "big") + pps)
    assert not h264_payload_has_sps(idr)
    assert not h264_payload_has_sps(b"\x7c\x85\x00")  # FU-A start of an IDR
    assert not h264_payload_has_sps(b"")

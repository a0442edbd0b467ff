"""Keyframes told from the bitstream alone: VP8 frame tag, H.264 NAL types."""

from __future__ import annotations

from media.keyframes import h264_nal_types, is_keyframe


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

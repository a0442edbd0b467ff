"""Which encoded frames are keyframes, from the bitstream alone (no decoding)."""

from __future__ import annotations


def is_vp8_keyframe(data: bytes) -> bool:
    """RFC 6386 §9.1: bit 0 of the frame tag is 0 for a key frame."""
    return len(data) > 0 and (data[0] & 0x01) == 0


def h264_nal_types(data: bytes) -> list[int]:
    """NAL unit types of an Annex-B access unit (start codes 00 00 01 or 00 00 00 01)."""
    types: list[int] = []
    i, n = 0, len(data)
    while True:
        i = data.find(b"\x00\x00\x01", i)
        if i < 0 or i + 3 >= n:
            return types
        types.append(data[i + 3] & 0x1F)
        i += 3


def is_h264_keyframe(data: bytes) -> bool:
    """An IDR slice (5) or an SPS (7), which encoders send right before an IDR."""
    return any(t in (5, 7) for t in h264_nal_types(data))


def is_keyframe(mime_type: str, data: bytes) -> bool:
    """``mime_type`` like ``video/VP8`` (case-insensitive); non-video frames count as keyframes."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        return is_vp8_keyframe(data)
    if mime == "video/h264":
        return is_h264_keyframe(data)
    return True

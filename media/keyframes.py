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


# RTP payloads: does this packet start a keyframe? (the packet engine gates viewers on these)

def vp8_payload_starts_keyframe(payload: bytes) -> bool:
    """RFC 7741 §4.2: the packet starts partition 0 of a frame (S=1, PID=0) and that frame's tag
    says key frame (RFC 6386 §9.1: bit 0 of the first byte is 0)."""
    n = len(payload)
    if n < 2:
        return False
    b0 = payload[0]
    if not b0 & 0x10 or b0 & 0x07:  # S bit unset or partition id not 0
        return False
    i = 1
    if b0 & 0x80:  # X: extension byte with I, L, T, K
        x = payload[1]
        i = 2
        if x & 0x80:  # I: picture id, 7 or 15 bits
            if i >= n:
                return False
            i += 2 if payload[i] & 0x80 else 1
        if x & 0x40:  # L: TL0PICIDX
            i += 1
        if x & 0x30:  # T or K: TID/KEYIDX byte
            i += 1
    return i < n and (payload[i] & 0x01) == 0


def _h264_payload_holds(payload: bytes, types: tuple[int, ...]) -> bool:
    """RFC 6184 §5: a single NAL unit of one of ``types``, or a STAP-A (24) holding one."""
    nal = payload[0] & 0x1F
    if nal in types:
        return True
    if nal == 24:
        i, n = 1, len(payload)
        while i + 2 < n:
            if payload[i + 2] & 0x1F in types:
                return True
            i += 2 + int.from_bytes(payload[i : i + 2], "big")
    return False


def h264_payload_starts_keyframe(payload: bytes) -> bool:
    """RFC 6184 §5: a single NAL unit of type 5 (IDR) or 7 (SPS), a STAP-A (24) holding one, or
    the first fragment (FU-A, 28, S bit) of one."""
    if not payload:
        return False
    if payload[0] & 0x1F == 28:
        return len(payload) > 1 and bool(payload[1] & 0x80) and (payload[1] & 0x1F) in (5, 7)
    return _h264_payload_holds(payload, (5, 7))


def h264_payload_has_sps(payload: bytes) -> bool:
    """RFC 6184 §5: a single SPS NAL unit (7), or a STAP-A (24) holding one."""
    return bool(payload) and _h264_payload_holds(payload, (7,))


def payload_starts_keyframe(mime_type: str, payload: bytes) -> bool:
    """``mime_type`` like ``video/VP8``; every packet of a non-video stream counts as a start."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        return vp8_payload_starts_keyframe(payload)
    if mime == "video/h264":
        return h264_payload_starts_keyframe(payload)
    return True

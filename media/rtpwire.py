"""RTP on the wire (RFC 3550, RFC 4588): just the header fields the packet engine needs, read and
written with ``struct`` on raw bytes, no packet objects.

A parsed packet is a :class:`RtpView`: the fixed header fields, the header extension block
(profile and data, :mod:`media.rtpext` reads it) and the payload (padding and CSRCs removed; the
forwarded copy carries no CSRCs and the extensions its viewer negotiated).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

_FIXED = struct.Struct("!BBHII")
_EXT_HEAD = struct.Struct("!HH")
_HEADER_LEN = 12


class RtpView(NamedTuple):
    payload_type: int
    marker: bool
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes
    extension_profile: int = 0  # 0xBEDE (one-byte elements), 0x100X (two-byte), 0: no extension
    extension: bytes = b""  # the elements after the 4-byte extension header, padding included


def parse_rtp(data: bytes) -> RtpView | None:
    """The header fields and payload of one RTP packet; None if it is malformed."""
    n = len(data)
    if n < _HEADER_LEN:
        return None
    b0, b1, seq, ts, ssrc = _FIXED.unpack_from(data)
    if b0 >> 6 != 2:
        return None
    start = _HEADER_LEN + 4 * (b0 & 0x0F)
    end = n
    if b0 & 0x20:  # padding: the last byte says how many bytes to drop
        end -= data[-1]
    if b0 & 0x10:  # header extension: 16-bit profile, 16-bit length in 32-bit words
        if start + 4 > n:
            return None
        profile, words = _EXT_HEAD.unpack_from(data, start)
        ext_end = start + 4 + 4 * words
        if ext_end > end:
            return None
        return RtpView(b1 & 0x7F, bool(b1 & 0x80), seq, ts, ssrc, data[ext_end:end], profile,
                       data[start + 4 : ext_end])
    if start > end:
        return None
    return RtpView(b1 & 0x7F, bool(b1 & 0x80), seq, ts, ssrc, data[start:end])


def build_rtp(payload_type: int, marker: bool, sequence_number: int, timestamp: int, ssrc: int,
              payload: bytes, extension: bytes = b"") -> bytes:
    """An RTP packet: version 2, no padding, no CSRC; ``extension`` is a whole header extension
    block (profile, length, elements: :meth:`media.rtpext.ExtensionPlan.block`) or empty."""
    if extension:
        return _FIXED.pack(0x90, (0x80 if marker else 0) | payload_type, sequence_number & 0xFFFF,
                           timestamp & 0xFFFFFFFF, ssrc) + extension + payload
    return _FIXED.pack(0x80, (0x80 if marker else 0) | payload_type, sequence_number & 0xFFFF,
                       timestamp & 0xFFFFFFFF, ssrc) + payload


def unwrap_rtx_payload(payload: bytes) -> tuple[int, bytes] | None:
    """RFC 4588: (original sequence number, original payload) of an RTX payload; None for padding."""
    if len(payload) < 3:
        return None  # padding-only probes carry no original packet
    return int.from_bytes(payload[:2], "big"), payload[2:]


def seq_delta(a: int, b: int) -> int:
    """``a - b`` for 16-bit sequence numbers, in -32768..32767."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000

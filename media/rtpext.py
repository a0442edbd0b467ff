"""RTP header extensions (RFC 8285) of forwarded packets, rewritten to the ids each viewer negotiated.

A publisher's extensions use the ids of its own SDP and describe its own link (send times,
transport-wide sequence numbers of its transport), so they are not copied as they are. Each
viewer's packets carry what its answer negotiated, of what aiortc's ``RTCRtpSender`` offers:

- ``sdes:mid``: the viewer's own media section id (a constant per viewer);
- ``abs-send-time``: the server's send time (6.18 fixed-point seconds, 24 bits), what the
  viewer's bandwidth estimator expects of the hop it sees;
- ``ssrc-audio-level``: copied from the publisher's packet when it carries one.

aiortc never negotiates transport-wide congestion control (aiortc#780), so no viewer of this
server has it; anything else is left out, and a viewer that negotiated none of these gets packets
without an extension header, as before. :class:`ExtensionPlan` is computed once per viewer from
its answer; viewers with equal plans share one (:func:`intern`), so a packet's extension block is
built once per distinct plan, not per viewer.
"""

from __future__ import annotations

import struct
import time
from typing import Any, Iterable

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE = 0x1000
_EXT_HEAD = struct.Struct("!HH")
_NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01


def abs_send_time(now: float | None = None) -> bytes:
    """The abs-send-time value (3 bytes) for wall-clock time ``now`` (default: now)."""
    t = time.time() if now is None else now
    return (int((t + _NTP_EPOCH_OFFSET) * (1 << 18)) & 0xFFFFFF).to_bytes(3, "big")


def find_extension(profile: int, data: bytes, ext_id: int) -> bytes | None:
    """The value of element ``ext_id`` in an extension block's data (after its 4-byte header), or None."""
    pos, n = 0, len(data)
    if profile == ONE_BYTE_PROFILE:
        while pos < n:
            b = data[pos]
            if b == 0:  # padding
                pos += 1
                continue
            x_id, length = b >> 4, (b & 0x0F) + 1
            if x_id == 15:  # reserved: stop parsing (RFC 8285 §4.2)
                return None
            if x_id == ext_id:
                value = data[pos + 1 : pos + 1 + length]
                return value if len(value) == length else None
            pos += 1 + length
    elif profile & 0xFFF0 == TWO_BYTE_PROFILE:
        while pos + 1 < n:
            x_id = data[pos]
            if x_id == 0:
                pos += 1
                continue
            length = data[pos + 1]
            if x_id == ext_id:
                value = data[pos + 2 : pos + 2 + length]
                return value if len(value) == length else None
            pos += 2 + length
    return None


class ExtensionPlan:
    """The extension ids one viewer negotiated (None: not negotiated) and its mid value.

    Compared by identity: :func:`intern` hands equal plans out as one object."""

    __slots__ = ("mid", "mid_id", "abs_send_time_id", "audio_level_id", "key", "_static", "_two_byte")

    def __init__(self, mid: str | None, mid_id: int | None, abs_send_time_id: int | None,
                 audio_level_id: int | None) -> None:
        self.mid = mid
        self.mid_id = mid_id if mid else None
        self.abs_send_time_id = abs_send_time_id
        self.audio_level_id = audio_level_id
        self.key = (mid, self.mid_id, abs_send_time_id, audio_level_id)
        ids = [i for i in (self.mid_id, abs_send_time_id, audio_level_id) if i is not None]
        mid_bytes = mid.encode("utf8") if mid and self.mid_id is not None else b""
        # RFC 8285: the one-byte form holds ids 1-14 and values of 1-16 bytes.
        self._two_byte = any(i > 14 for i in ids) or len(mid_bytes) > 16
        self._static = self._element(self.mid_id, mid_bytes) if mid_bytes and self.mid_id is not None else b""

    @classmethod
    def negotiated(cls, extensions: Iterable[Any], mid: str | None) -> ExtensionPlan | None:
        """The plan for a viewer whose answer lists ``extensions`` (aiortc's
        ``RTCRtpHeaderExtensionParameters``: ``id``, ``uri``) for its media section ``mid``; None
        when none of them is one this server writes."""
        ids = {e.uri: e.id for e in extensions}
        plan = cls(mid, ids.get(MID), ids.get(ABS_SEND_TIME), ids.get(AUDIO_LEVEL))
        if plan.mid_id is None and plan.abs_send_time_id is None and plan.audio_level_id is None:
            return None
        return plan

    def _element(self, ext_id: int, value: bytes) -> bytes:
        if self._two_byte:
            return bytes((ext_id, len(value))) + value
        return bytes(((ext_id << 4) | (len(value) - 1),)) + value

    def block(self, send_time: bytes, audio_level: bytes | None) -> bytes:
        """The whole extension header (profile, length, elements, padding) for one packet."""
        body = self._static
        if self.abs_send_time_id is not None:
            body += self._element(self.abs_send_time_id, send_time)
        if self.audio_level_id is not None and audio_level:
            body += self._element(self.audio_level_id, audio_level)
        if not body:
            return b""
        pad = -len(body) % 4
        return _EXT_HEAD.pack(TWO_BYTE_PROFILE if self._two_byte else ONE_BYTE_PROFILE,
                              (len(body) + pad) >> 2) + body + b"\x00" * pad


def intern(plans: dict[tuple[Any, ...], ExtensionPlan], plan: ExtensionPlan | None) -> ExtensionPlan | None:
    """The one plan object equal to ``plan`` in ``plans`` (added if new)."""
    if plan is None:
        return None
    return plans.setdefault(plan.key, plan)

"""A recording's timeline: media timestamps that count from its start on the server's clock.

RTP timestamps start anywhere, so each stream is anchored on its first frame to the server
clock, and re-anchored when it drifts more than :data:`REANCHOR_S` from it (a device clock
jump). The relay keeps timestamps monotonic across publisher reconnects, so a gap of 5 s in a
unit's link is 5 s on the timeline too; :class:`~recordings.segment.SegmentWriter` guards what
is left (timestamps that do not increase).
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

RATES = {"video": 90_000, "audio": 48_000}  # media clock rates: VP8/H.264 video, Opus audio
REANCHOR_S = 5.0


class Timeline:
    """Maps each stream's device timestamps onto the recording's timeline. Writer thread only."""

    def __init__(self, opened_at: float, recording_id: str) -> None:
        self._opened_at = opened_at
        self._recording_id = recording_id
        self._anchor: dict[str, int] = {}

    def pts(self, kind: str, device_pts: int, wall: float) -> int:
        """``device_pts`` of a frame of ``kind`` that arrived at server time ``wall``, in the
        recording's clock units (:data:`RATES`) since it was opened."""
        rate = RATES[kind]
        expected = int((wall - self._opened_at) * rate)
        anchor = self._anchor.get(kind)
        if anchor is None or abs(device_pts + anchor - expected) > REANCHOR_S * rate:
            if anchor is not None:
                logger.warning("recording %s: %s clock jumped %.1f s; re-anchored to the server clock",
                               self._recording_id, kind, (device_pts + anchor - expected) / rate)
            anchor = expected - device_pts
            self._anchor[kind] = anchor
        return device_pts + anchor

    @property
    def anchors(self) -> dict[str, int]:
        """The current offset per stream, device clock to timeline (``recording.json`` keeps it)."""
        return dict(self._anchor)

"""A recording's writer thread at work: frames into segments, cut on keyframes.

Each segment starts on a video keyframe (or on any frame of an audio-only recording) and is cut
at the first one at least ``segment_s`` after its start. Publishers send keyframes only when
asked (Chromium does), so while a segment waits for one, the first one or a due cut, the writer
asks the publisher at most every :data:`KEYFRAME_ASK_S`. The writer puts every frame on the
recording's :class:`~recordings.timeline.Timeline`, muxes it (:class:`SegmentWriter`), closes
a segment when it is cut and hands it to the :class:`~recordings.sealer.Sealer`. A segment that
cannot be written is dropped whole (never half in the ledger) and becomes a gap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from .gaps import Gaps
from .metadata import recording_metadata
from .recording_info import RecordingInfo, RecordingStats
from .sealer import OnEvent, Sealer
from .segment import SegmentError, SegmentWriter, extension, frame_size
from .timeline import Timeline

logger = logging.getLogger(__name__)

KEYFRAME_ASK_S = 0.5  # while a segment waits for a keyframe, ask the publisher this often


@dataclass
class Frame:
    """One encoded frame as the relay forwarded it, with the server time it arrived."""

    kind: str  # "video" or "audio"
    data: bytes
    pts: int  # device clock (90 kHz video, 48 kHz audio)
    keyframe: bool
    wall: float


class Segmenter:
    """Writer thread only, except :attr:`paused_cause`, which the event loop sets too."""

    def __init__(self, info: RecordingInfo, directory: Path, *, opened_at: float, segment_s: float,
                 stats: RecordingStats, sealer: Sealer, on_event: OnEvent,
                 request_keyframe: Callable[[], None]) -> None:
        self._info = info
        self._dir = directory
        self._opened_at = opened_at
        self._segment_s = segment_s
        self._stats = stats
        self._sealer = sealer
        self._on_event = on_event
        self._request_keyframe = request_keyframe
        self._timeline = Timeline(opened_at, info.recording_id)
        self._gaps = Gaps(info.recording_id)
        self.paused_cause: str | None = None  # set while the disk is full: frames are dropped
        self._writer: SegmentWriter | None = None
        self._seg_started_wall = 0.0
        self._seq = 0
        self._last_wall: float | None = None  # server time of the last frame written
        self._size: tuple[int, int] | None = None
        self._keyframe_asked = float("-inf")

    def frame(self, frame: Frame) -> None:
        if self.paused_cause is not None:
            self._stats.dropped += 1
            return
        has_video = self._info.video_codec is not None
        if self._writer is None:
            if has_video and not (frame.kind == "video" and frame.keyframe):
                self._stats.dropped += 1  # a segment starts on a keyframe
                if frame.kind == "video":
                    self._ask_keyframe(frame.wall)
                return
            self._end_gap(frame.wall)
            if not self._open_segment(frame):
                return
        elif frame.wall - self._seg_started_wall >= self._segment_s:
            if (frame.kind == "video" or not has_video) and frame.keyframe:
                self._seal()
                if not self._open_segment(frame):
                    return
            elif frame.kind == "video":
                self._ask_keyframe(frame.wall)  # the segment is due: cut it at the next keyframe
        try:
            assert self._writer is not None
            self._writer.write(frame.kind, frame.data, self._timeline.pts(frame.kind, frame.pts, frame.wall),
                               frame.keyframe)
            self._stats.frames[frame.kind] += 1
            self._last_wall = frame.wall
        except SegmentError as exc:
            self._segment_failed(exc, frame.wall)

    def cut(self, cause: str, at: float) -> None:
        """Frames stop for ``cause``: seal the open segment and open a gap."""
        self._seal()
        self._gaps.begin(self._last_wall or at, cause)

    def carry(self, cause: str, at: float, detail: str) -> None:
        """The unit's frames stopped at ``at`` on another node (``node_failover``): a gap from
        then, written when the first frame arrives here (:meth:`Gaps.carry`)."""
        self._gaps.carry(at, cause, detail)

    def resume(self) -> None:
        """Space is back: write again from the next keyframe."""
        self.paused_cause = None
        self._sealer.retry_pending()
        self._request_keyframe()

    def close(self, reason: str, at: float, extra: Mapping[str, Any]) -> None:
        """Seal what is open, settle the gap, write ``recording.json`` and ``recording_closed``."""
        self._seal()
        end_cause, gap = self._gaps.at_close(at, self._last_wall is not None)
        if gap is not None:
            self._ledger_gap(gap)

        def metadata() -> dict[str, Any]:
            return recording_metadata(
                self._info, reason=reason, opened_at=self._opened_at, closed_at=at, resolution=self._size,
                reanchors=self._timeline.anchors, segments=self._sealer.segments, gaps=self._sealer.gaps,
                dropped_frames=self._stats.dropped, extra=extra)

        self._sealer.close(reason, at, end_cause, metadata)
        self._on_event("closed", {"recording_id": self._info.recording_id, "reason": reason})

    def _ask_keyframe(self, now: float) -> None:
        # Once per interval, not per frame: each ask crosses to the event loop.
        if now - self._keyframe_asked >= KEYFRAME_ASK_S:
            self._keyframe_asked = now
            self._request_keyframe()

    def _end_gap(self, at: float) -> None:
        gap = self._gaps.end(at, self._last_wall is not None)
        if gap is not None:
            self._ledger_gap(gap)

    def _ledger_gap(self, gap: dict[str, Any]) -> None:
        self._stats.gaps += 1
        self._sealer.gap(gap)

    def _open_segment(self, frame: Frame) -> bool:
        self._seq += 1
        if frame.kind == "video":
            self._size = frame_size(self._info.video_codec or "vp8", frame.data) or self._size
        path = self._dir / f"{self._seq:06d}{extension(self._info.video_codec)}"
        try:
            self._writer = SegmentWriter(path, self._info.video_codec, self._info.audio_codec is not None, self._size)
        except SegmentError as exc:
            self._seq -= 1
            self._segment_failed(exc, frame.wall)
            return False
        self._seg_started_wall = frame.wall
        return True

    def _segment_failed(self, exc: SegmentError, at: float) -> None:
        """The open segment cannot be completed: drop it (never half in the ledger) and open a gap."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.abort()
            self._seq -= 1
            at = self._seg_started_wall
        cause = "disk_full" if exc.disk_full else "server_fault"
        logger.error("recording %s: %s (%s)", self._info.recording_id, exc, cause)
        self._gaps.begin(at, cause)
        if exc.disk_full:
            self.paused_cause = "disk_full"
            self._on_event("disk_full", {"recording_id": self._info.recording_id, "message": str(exc)})
        else:
            self._on_event("error", {"recording_id": self._info.recording_id, "message": str(exc)})

    def _seal(self) -> None:
        """Close the open segment here; the sealer makes it durable and ledgers it."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            writer.close_container()
        except SegmentError as exc:
            self._writer = writer  # the next segment reuses its number: the file is gone
            self._segment_failed(exc, self._seg_started_wall)
            return
        self._sealer.seal(writer, self._seg_started_wall, self._last_wall or self._seg_started_wall)

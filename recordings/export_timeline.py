"""An export's view of a recording: its segments read packet by packet (headers only), the
recording-time axis, gaps and frame size, and the window of it that an export covers.

*Recording time* is seconds since the first video frame of the first segment, gaps included
(each segment's ``DISPATCH_OFFSET_S`` tag says where it sits). A stretch of more than
:data:`GAP_S` with neither video nor kept audio is a gap; an export collapses the gaps inside
its window (:class:`Window`) so it plays without dead air.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from .export_errors import ExportError
from .segment import segment_offset

GAP_S = 1.0
GAP_NOTE_S = 3.0


@dataclass(frozen=True)
class Gap:
    """A stretch of recording time with no media: last packet before, first packet after."""

    start_s: float
    end_s: float


@dataclass
class SegmentSpan:
    """Where one segment's packets lie in recording time."""

    path: Path
    first_s: float  # recording time of the first and last packet
    last_s: float
    offset: float = 0.0  # the segment's time 0 on the recorder's timeline (its DISPATCH_OFFSET_S tag)


@dataclass
class ExportTimeline:
    """What a scan of the segments found (see :func:`scan`)."""

    origin: float  # stream clock seconds of recording time 0
    segments: list[SegmentSpan]
    video: np.ndarray  # recording times of all video packets, sorted
    step: float  # nominal frame interval
    gaps: list[Gap]
    width: int
    height: int
    audio_template: Path | None


def seconds(pts: int, tb: Fraction | None) -> float:
    """A timestamp in seconds (milliseconds when the stream has no time base)."""
    return float(pts * tb) if tb is not None else float(pts) / 1000


def open_segment(path: Path) -> Any:
    """The segment's container, for reading; :class:`ExportError` when it cannot be opened."""
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise ExportError(f"cannot read segment {path.name}: {exc}") from exc


def scan(segments: list[Path], include_audio: bool) -> ExportTimeline:
    """Read every packet header (no decoding) for the timeline, gaps and frame size."""
    if not segments:
        raise ExportError("no segments")
    origin: float | None = None
    spans, video, media = [], [], []
    width = height = 0
    template = None
    for path in segments:
        with open_segment(path) as c:
            offset = segment_offset(c)
            if not c.streams.video:
                raise ExportError(f"segment {path.name} has no video")
            v = c.streams.video[0]
            a = c.streams.audio[0] if include_audio and c.streams.audio else None
            if not width:
                width, height = v.codec_context.width, v.codec_context.height
            if a is not None and template is None:
                template = path
            times: list[float] = []
            try:
                for pkt in c.demux(*[s for s in (v, a) if s is not None]):
                    if pkt.pts is None:
                        continue
                    t = offset + seconds(pkt.pts, pkt.time_base)
                    if pkt.stream.type == "video":
                        if origin is None:
                            origin = t
                        video.append(t - origin)
                    times.append(t)
            except av.FFmpegError as exc:
                raise ExportError(f"cannot read segment {path.name}: {exc}") from exc
            if origin is None or not times:
                raise ExportError(f"segment {path.name} has no video frames")
            spans.append(SegmentSpan(path, min(times) - origin, max(times) - origin, offset))
            media += [t - origin for t in times]
    vt = np.unique(np.asarray(video))
    step = float(np.median(np.diff(vt))) if len(vt) > 1 else 1 / 30
    allt = np.unique(np.asarray(media))
    d = np.diff(allt)
    gaps = [Gap(float(allt[i]), float(allt[i + 1])) for i in np.nonzero(d > GAP_S)[0]]
    width, height = width & ~1, height & ~1
    if width <= 0 or height <= 0:
        raise ExportError("cannot tell the frame size")
    return ExportTimeline(origin or 0.0, spans, vt, step, gaps, width, height, template)


class Window:
    """Recording time → output time for a window, with the gaps inside it collapsed."""

    def __init__(self, tl: ExportTimeline, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.gaps = [g for g in tl.gaps if g.start_s >= start and g.end_s <= end]
        self._ends = [g.end_s for g in self.gaps]
        self._cut = np.cumsum([g.end_s - g.start_s - tl.step for g in self.gaps]).tolist()

    def out(self, t: float) -> float:
        """Output time of recording time ``t``."""
        i = bisect.bisect_right(self._ends, t + 1e-9)
        return t - self.start - (self._cut[i - 1] if i else 0.0)

    def note(self, t: float) -> str:
        """The watermark's note for recording time ``t``: ``AFTER GAP <n>s`` for 3 s after a gap."""
        i = bisect.bisect_right(self._ends, t + 1e-9)
        if i and t - self.gaps[i - 1].end_s < GAP_NOTE_S:
            return f"AFTER GAP {self.gaps[i - 1].end_s - self.gaps[i - 1].start_s:.1f}s"
        return ""

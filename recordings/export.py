"""Redacted, watermarked export of one recording for a party.

:func:`export_recording` reads the sealed segments of a recording in order (PyAV), blurs faces
and the approver's regions (:mod:`recordings.redaction`), draws the watermark
(:mod:`recordings.watermark`) and writes one H.264 MP4 with ``+faststart``: the format that plays
on any phone, browser and desktop player a party may have, and starts playing before it has
fully downloaded. libx264 ``preset=ultrafast`` (crf 23) is the default because the whole export
then costs a third to 40% less CPU than with ``veryfast``, which is what keeps a 640x480 export
above 2x real time on two shared cores (docs/benchmarks.md, "Party export"); the price is a
larger file (2.3x on the benchmark's noisy source). Pass ``preset="veryfast"`` when size
matters more than time. VP8 WebM was not chosen: libvpx at its fastest real-time setting costs
about as much as x264 ``veryfast`` and plays in fewer places. The Opus audio is copied through
unchanged (no re-encode; Opus in MP4 is read by ffmpeg/ffprobe 5.1 and by current browsers).
The segments are only read.

**Times.** ``start_s``, ``end_s``, region times and the ``T+`` shown in the watermark are
*recording time*: seconds since the first video frame of ``segments[0]``, gaps included, the
timeline the console shows (:mod:`recordings.export_timeline`). **Gaps** (stretches of more
than ``GAP_S`` with neither video nor kept audio) are collapsed in the output, so it plays
without dead air; each collapsed gap is in :attr:`ExportResult.gaps`, and for 3 s after one the
watermark says ``AFTER GAP <n>s``. Shorter
stalls keep their length (the last frame stays on screen). The output starts at the first video
frame at or after ``start_s`` and stops before ``end_s``.

The work is blocking and CPU-bound: call it from a worker thread or process. Three threads
share it: decoding (:mod:`recordings.export_decoder`), then detection/blur/watermark in the
calling thread, then encoding and muxing (:mod:`recordings.export_encoder`; libx264 adds its
own threads), joined by short bounded queues. ``cancel`` is checked once per frame; a
cancelled or failed export leaves no file behind (it is written as ``<name>.part`` and renamed
when complete and fsynced).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable

import av
import cv2
import numpy as np

from .durable import fsync_dir, fsync_file, sha256_file
from .export_decoder import decode
from .export_encoder import AUDIO_TB, QUEUE_FRAMES, VIDEO_TB, Encoder
from .export_errors import ExportCancelled, ExportError
from .export_timeline import Gap, Window, open_segment, scan, seconds
from .redaction import Box, FaceDetector, RedactionConfig, RedactionRecord, Redactor, Region, draw_review, plan_boxes
from .watermark import Watermarker, WatermarkSpec

__all__ = ["ExportCancelled", "ExportError", "ExportResult", "Gap", "ReviewFrame", "export_recording",
           "review_keyframe"]

logger = logging.getLogger(__name__)

DEFAULT_REDACTION = RedactionConfig()


@dataclass(frozen=True)
class ExportResult:
    """What was written. ``duration_s`` and ``frames`` are of the output; ``start_s``/``end_s``
    (recording time) the span it covers; ``gaps`` the collapsed gaps inside it;
    ``redactions`` what was blurred, and why, in recording time; ``timings`` seconds per stage
    (each stage's own thread; they overlap)."""

    path: Path
    sha256: str
    bytes: int
    duration_s: float
    frames: int
    width: int
    height: int
    start_s: float
    end_s: float
    audio_codec: str | None
    gaps: tuple[Gap, ...]
    redactions: tuple[RedactionRecord, ...]
    timings: dict[str, float] = field(default_factory=dict)
    video_codec: str = "h264"

    def to_dict(self) -> dict[str, Any]:
        """The parts a manifest lists (the path is the caller's business)."""
        return {"sha256": self.sha256, "bytes": self.bytes, "duration_s": round(self.duration_s, 3),
                "frames": self.frames, "width": self.width, "height": self.height,
                "video_codec": self.video_codec, "audio_codec": self.audio_codec,
                "start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3),
                "gaps": [{"start_s": round(g.start_s, 3), "end_s": round(g.end_s, 3)} for g in self.gaps],
                "redactions": [r.to_dict() for r in self.redactions]}


@dataclass(frozen=True)
class ReviewFrame:
    """A keyframe for the approver: JPEG of the unredacted frame with the planned boxes drawn."""

    jpeg: bytes
    time_s: float
    width: int
    height: int
    blurred: tuple[Box, ...]
    kept: tuple[Box, ...]


class _Progress:
    """Calls ``callback`` with 0.0, then at most once per 1% of output time, then 1.0."""

    def __init__(self, callback: Callable[[float], None] | None, total_s: float) -> None:
        self.callback, self.total_s, self.last = callback, total_s, -1.0

    def __call__(self, share: float) -> None:
        if self.callback is not None and share != self.last and (share >= self.last + 0.01 or share in (0.0, 1.0)):
            self.last = share
            self.callback(share)


def export_recording(segments: list[Path], out_path: Path, *, start_s: float | None = None,
                     end_s: float | None = None, regions: Iterable[Region] = (),
                     watermark: WatermarkSpec, include_audio: bool = True,
                     progress: Callable[[float], None] | None = None,
                     cancel: threading.Event | None = None,
                     redaction: RedactionConfig = DEFAULT_REDACTION, preset: str = "ultrafast",
                     crf: int = 23, threads: int = 0) -> ExportResult:
    """Export ``segments`` (in recording order) to ``out_path`` (MP4); see the module docstring.

    ``regions`` are in pixels of the exported frame size (the first segment's) and recording
    time. ``progress`` gets 0.0, then the share of output time done (at most every 1%), then
    1.0, from the calling thread. ``preset``/``crf``/``threads`` go to libx264 (``threads=0``:
    its own choice). Raises :class:`ExportCancelled` or :class:`ExportError`.
    """
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    tl = scan(list(segments), include_audio)
    first = int(np.searchsorted(tl.video, start_s or 0.0))
    if first >= len(tl.video):
        raise ExportError("no video at or after start_s")
    window = Window(tl, float(tl.video[first]), float("inf") if end_s is None else end_s)
    kept = tl.video[(tl.video >= window.start) & (tl.video < window.end)]
    if len(kept) == 0:
        raise ExportError("no video in the requested range")
    last_in = float(kept[-1])
    report = _Progress(progress, window.out(last_in) + tl.step)
    timings["scan"] = time.perf_counter() - t_all
    audio = include_audio and tl.audio_template is not None

    redactor = Redactor(redaction, tuple(regions), tl.width, tl.height)
    marker = Watermarker(watermark, tl.width, tl.height)
    tmp = out_path.with_name(out_path.name + ".part")
    q: queue.Queue[tuple[Any, ...]] = queue.Queue(QUEUE_FRAMES)
    stop = threading.Event()
    producer = threading.Thread(target=decode, args=(tl, window, audio, q, stop, timings),
                                name=f"export-decode-{out_path.name}", daemon=True)
    encoder: Encoder | None = None
    done = False
    last_vpts = last_apts = -1
    end_out = 0.0
    spent = {"watermark": 0.0, "wait_decode": 0.0}

    def emit(item: tuple[float, float], yuv: np.ndarray) -> None:
        nonlocal last_vpts, end_out
        t, t_out = item
        pts = round(t_out / VIDEO_TB)
        if pts <= last_vpts:
            return
        t0 = time.perf_counter()
        marker.apply(yuv, t, window.note(t))
        spent["watermark"] += time.perf_counter() - t0
        assert encoder is not None
        encoder.video(yuv, pts)
        last_vpts = pts
        end_out = max(end_out, t_out + tl.step)
        report(min(0.99, t_out / report.total_s))

    try:
        tmp.unlink(missing_ok=True)
        try:
            encoder = Encoder(tmp, tl, audio, preset, crf, threads)
        except av.FFmpegError as exc:
            raise ExportError(f"cannot start the encoder: {exc}") from exc
        report(0.0)
        producer.start()
        while True:
            if cancel is not None and cancel.is_set():
                raise ExportCancelled("export cancelled")
            t0 = time.perf_counter()
            item = q.get()
            spent["wait_decode"] += time.perf_counter() - t0
            if item[0] == "end":
                break
            if item[0] == "error":
                raise ExportError(f"decoding failed: {item[1]}") from item[1]
            if item[0] == "a":
                _, t, packet = item
                t_out = window.out(t)
                pts = round(t_out / AUDIO_TB)
                if pts > last_apts:  # segments may overlap by a packet at their seam
                    dur = packet.duration * packet.time_base if packet.duration else Fraction(960, 48_000)
                    encoder.audio(packet, pts, round(dur / AUDIO_TB))
                    last_apts = pts
                    end_out = max(end_out, t_out + float(dur))
                continue
            _, t, yuv = item
            for ready, frame_yuv in redactor.push(t, yuv, (t, window.out(t))):
                emit(ready, frame_yuv)
        for ready, frame_yuv in redactor.flush(last_in + tl.step):
            emit(ready, frame_yuv)
        encoder.finish()
        t0 = time.perf_counter()
        digest, size = _durable_hash(tmp)
        os.replace(tmp, out_path)
        fsync_dir(out_path.parent)
        timings["hash_rename"] = time.perf_counter() - t0
        done = True
    finally:
        stop.set()
        while producer.is_alive():
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                pass
        if producer.ident is not None:
            producer.join()
        if encoder is not None and not done:
            encoder.abort()
        if not done:
            tmp.unlink(missing_ok=True)
    timings.update(spent)
    timings.update(redactor.timings)
    timings["encode_mux"] = encoder.seconds
    timings["total"] = time.perf_counter() - t_all
    report(1.0)
    logger.info("export %s: %d frames, %.1f s of video in %.1f s, %d redaction records", out_path.name,
                encoder.frames, end_out, timings["total"], len(redactor.records))
    return ExportResult(out_path, digest, size, end_out, encoder.frames, tl.width, tl.height, window.start,
                        last_in + tl.step, "opus" if audio else None, tuple(window.gaps),
                        tuple(redactor.records), {k: round(v, 3) for k, v in timings.items()})


def review_keyframe(segments: list[Path], at_s: float, *, regions: Iterable[Region] = (),
                    redaction: RedactionConfig = DEFAULT_REDACTION, quality: int = 85) -> ReviewFrame:
    """The first frame at or after recording time ``at_s`` (else the last frame), unredacted,
    with the boxes the export would blur (and the ones a keep region spares) drawn on it."""
    tl = scan(list(segments), include_audio=False)
    seg = next((s for s in reversed(tl.segments) if s.first_s <= at_s), tl.segments[0])
    chosen = None
    with open_segment(seg.path) as c:
        v = c.streams.video[0]
        try:
            c.seek(int((at_s + tl.origin - seg.offset) / v.time_base), stream=v, backward=True)
        except av.FFmpegError:
            c.seek(0)
        for frame in c.decode(v):
            if frame.pts is None:
                continue
            chosen = frame
            if seg.offset + seconds(frame.pts, frame.time_base) - tl.origin >= at_s - 1e-6:
                break
    if chosen is None:
        raise ExportError(f"no frame at {at_s:.3f} s")
    t = seg.offset + seconds(chosen.pts, chosen.time_base) - tl.origin
    bgr = chosen.reformat(tl.width, tl.height, "bgr24").to_ndarray()
    auto = FaceDetector(redaction, tl.width, tl.height).detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)) \
        if redaction.auto else []
    blurred, kept = plan_boxes(auto, tuple(regions), t)
    jpeg = draw_review(bgr, blurred, kept, caption=f"T+{t:.2f}s", quality=quality)
    return ReviewFrame(jpeg, t, tl.width, tl.height, tuple(blurred), tuple(kept))


def _durable_hash(path: Path) -> tuple[str, int]:
    fsync_file(path)
    return sha256_file(path)

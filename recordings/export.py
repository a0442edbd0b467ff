"""Redacted, watermarked export of one recording for a party.

:func:`export_recording` reads the sealed segments of a recording in order (PyAV), blurs faces
and the approver's regions (:mod:`recordings.redaction`), draws the watermark
(:mod:`recordings.watermark`) and writes one H.264 MP4 with ``+faststart``: the format that plays
on any phone, browser and desktop player a party may have, and starts playing before it has
fully downloaded. libx264 ``preset=ultrafast`` (crf 23) is the default because the whole export
then costs a third to 40% less CPU than with ``veryfast``, which is what keeps a 640x480 export
above 2x real time on two shared cores (docs/benchmarks.md, "Party export"); the price is a
larger file (2.3x on the benchmark's noisy source). Pass ``preset="veryfast"`` when size matters more than time. VP8 WebM was not
chosen: libvpx at its fastest real-time setting costs about as much as x264 ``veryfast`` and
plays in fewer places. The Opus audio is copied through unchanged (no re-encode; Opus in MP4
is read by ffmpeg/ffprobe 5.1 and by current browsers). The segments are only read.

**Times.** ``start_s``, ``end_s``, region times and the ``T+`` shown in the watermark are
*recording time*: seconds since the first video frame of ``segments[0]``, gaps included, the
timeline the console shows. **Gaps** (stretches of more than ``GAP_S`` with neither video nor
kept audio) are collapsed in the output, so it plays without dead air; each collapsed gap is in
:attr:`ExportResult.gaps`, and for 3 s after one the watermark says ``AFTER GAP <n>s``. Shorter
stalls keep their length (the last frame stays on screen). The output starts at the first video
frame at or after ``start_s`` and stops before ``end_s``.

The work is blocking and CPU-bound: call it from a worker thread or process. Three threads
share it: decoding, then detection/blur/watermark in the calling thread, then encoding and
muxing (libx264 adds its own), joined by short bounded queues. ``cancel`` is checked once per frame; a cancelled
or failed export leaves no file behind (it is written as ``<name>.part`` and renamed when
complete and fsynced).
"""

from __future__ import annotations

import bisect
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
from .redaction import Box, FaceDetector, RedactionConfig, RedactionRecord, Redactor, Region, draw_review, plan_boxes
from .segment import segment_offset
from .watermark import Watermarker, WatermarkSpec

logger = logging.getLogger(__name__)

GAP_S = 1.0
GAP_NOTE_S = 3.0
VIDEO_TB = Fraction(1, 90_000)
AUDIO_TB = Fraction(1, 48_000)
_QUEUE_FRAMES = 24


class ExportError(Exception):
    """The export could not be made (unreadable segment, empty range, encoder failure)."""


class ExportCancelled(ExportError):
    """``cancel`` was set; nothing was written."""


@dataclass(frozen=True)
class Gap:
    """A stretch of recording time with no media: last packet before, first packet after."""

    start_s: float
    end_s: float


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


@dataclass
class _Segment:
    path: Path
    first_s: float  # recording time of the first and last packet
    last_s: float
    offset: float = 0.0  # the segment's time 0 on the recorder's timeline (its DISPATCH_OFFSET_S tag)


@dataclass
class _Timeline:
    origin: float  # stream clock seconds of recording time 0
    segments: list[_Segment]
    video: np.ndarray  # recording times of all video packets, sorted
    step: float  # nominal frame interval
    gaps: list[Gap]
    width: int
    height: int
    audio_template: Path | None


def _seconds(pts: int, tb: Fraction | None) -> float:
    return float(pts * tb) if tb is not None else float(pts) / 1000


def _open(path: Path) -> Any:
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise ExportError(f"cannot read segment {path.name}: {exc}") from exc


def _scan(segments: list[Path], include_audio: bool) -> _Timeline:
    """Read every packet header (no decoding) for the timeline, gaps and frame size."""
    if not segments:
        raise ExportError("no segments")
    origin: float | None = None
    spans, video, media = [], [], []
    width = height = 0
    template = None
    for path in segments:
        with _open(path) as c:
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
                    t = offset + _seconds(pkt.pts, pkt.time_base)
                    if pkt.stream.type == "video":
                        if origin is None:
                            origin = t
                        video.append(t - origin)
                    times.append(t)
            except av.FFmpegError as exc:
                raise ExportError(f"cannot read segment {path.name}: {exc}") from exc
            if origin is None or not times:
                raise ExportError(f"segment {path.name} has no video frames")
            spans.append(_Segment(path, min(times) - origin, max(times) - origin, offset))
            media += [t - origin for t in times]
    vt = np.unique(np.asarray(video))
    step = float(np.median(np.diff(vt))) if len(vt) > 1 else 1 / 30
    allt = np.unique(np.asarray(media))
    d = np.diff(allt)
    gaps = [Gap(float(allt[i]), float(allt[i + 1])) for i in np.nonzero(d > GAP_S)[0]]
    width, height = width & ~1, height & ~1
    if width <= 0 or height <= 0:
        raise ExportError("cannot tell the frame size")
    return _Timeline(origin or 0.0, spans, vt, step, gaps, width, height, template)


class _Mapping:
    """Recording time → output time for a window, with the gaps inside it collapsed."""

    def __init__(self, tl: _Timeline, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.gaps = [g for g in tl.gaps if g.start_s >= start and g.end_s <= end]
        self._ends = [g.end_s for g in self.gaps]
        self._cut = np.cumsum([g.end_s - g.start_s - tl.step for g in self.gaps]).tolist()

    def out(self, t: float) -> float:
        i = bisect.bisect_right(self._ends, t + 1e-9)
        return t - self.start - (self._cut[i - 1] if i else 0.0)

    def note(self, t: float) -> str:
        i = bisect.bisect_right(self._ends, t + 1e-9)
        if i and t - self.gaps[i - 1].end_s < GAP_NOTE_S:
            return f"AFTER GAP {self.gaps[i - 1].end_s - self.gaps[i - 1].start_s:.1f}s"
        return ""


def _decode(tl: _Timeline, window: _Mapping, include_audio: bool, q: queue.Queue[tuple[Any, ...]],
            stop: threading.Event, timings: dict[str, float]) -> None:
    """Producer thread: ("v", t, yuv) and ("a", t, packet) in file order, then ("end",)."""

    def put(item: tuple[Any, ...]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    try:
        last_v = -1e18
        spent = 0.0
        for seg in tl.segments:
            if seg.last_s < window.start or seg.first_s >= window.end:
                continue
            with _open(seg.path) as c:
                v = c.streams.video[0]
                v.thread_type = "AUTO"
                a = c.streams.audio[0] if include_audio and c.streams.audio else None
                for pkt in c.demux(*[s for s in (v, a) if s is not None]):
                    if pkt.stream.type == "audio":
                        if pkt.pts is None:
                            continue
                        t = seg.offset + _seconds(pkt.pts, pkt.time_base) - tl.origin
                        if window.start <= t < window.end and not put(("a", t, pkt)):
                            return
                        continue
                    t0 = time.perf_counter()
                    frames = pkt.decode()
                    for frame in frames:
                        if frame.pts is None:
                            continue
                        t = seg.offset + _seconds(frame.pts, frame.time_base) - tl.origin
                        if not window.start <= t < window.end or t <= last_v:
                            continue
                        last_v = t
                        if frame.format.name != "yuv420p" or (frame.width, frame.height) != (tl.width, tl.height):
                            frame = frame.reformat(tl.width, tl.height, "yuv420p")
                        yuv = frame.to_ndarray()
                        spent += time.perf_counter() - t0
                        if not put(("v", t, yuv)):
                            return
                        t0 = time.perf_counter()
                    spent += time.perf_counter() - t0
        timings["decode"] = spent
        put(("end",))
    except Exception as exc:  # handed to the consumer, which raises it
        put(("error", exc))


class _Encoder:
    """Writer thread: turns yuv420p arrays into H.264, muxes them and the copied Opus packets
    into the MP4 at ``path``, in the order they were handed over. The container is opened in
    the constructor (errors raise there) and closed by :meth:`finish` or :meth:`abort`."""

    def __init__(self, path: Path, tl: _Timeline, audio: bool, preset: str, crf: int, threads: int) -> None:
        self.frames = 0
        self.seconds = 0.0
        self.error: BaseException | None = None
        self._aborted = False
        self._q: queue.Queue[tuple[Any, ...]] = queue.Queue(_QUEUE_FRAMES)
        self._out = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        try:
            fps = max(1, round(1 / tl.step))
            self._video = self._out.add_stream("libx264", rate=fps)
            self._video.width, self._video.height, self._video.pix_fmt = tl.width, tl.height, "yuv420p"
            self._video.time_base = VIDEO_TB
            self._video.codec_context.time_base = VIDEO_TB
            self._video.codec_context.thread_count = threads
            self._video.options = {"preset": preset, "crf": str(crf), "g": str(2 * fps), "keyint_min": str(fps)}
            self._audio = None
            if audio:
                assert tl.audio_template is not None
                with _open(tl.audio_template) as c:
                    self._audio = self._out.add_stream_from_template(c.streams.audio[0])
        except BaseException:
            self._out.close()
            raise
        self._thread = threading.Thread(target=self._run, name=f"export-encode-{path.name}", daemon=True)
        self._thread.start()

    def video(self, yuv: np.ndarray, pts: int) -> None:
        self._put(("v", yuv, pts))

    def audio(self, packet: av.Packet, pts: int, duration: int) -> None:
        self._put(("a", packet, pts, duration))

    def _put(self, item: tuple[Any, ...]) -> None:
        while True:
            if self.error is not None:
                raise ExportError(f"encoding failed: {self.error}") from self.error
            try:
                self._q.put(item, timeout=0.2)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    raise ExportError("the encoder thread stopped")

    def _run(self) -> None:
        try:
            while True:
                item = self._q.get()
                t0 = time.perf_counter()
                if self._aborted:
                    item = ("abort",)
                if item[0] == "v":
                    frame = av.VideoFrame.from_ndarray(item[1], format="yuv420p")
                    frame.pts, frame.time_base = item[2], VIDEO_TB
                    self._out.mux(self._video.encode(frame))
                    self.frames += 1
                elif item[0] == "a":
                    packet = item[1]
                    packet.stream = self._audio
                    packet.time_base = AUDIO_TB
                    packet.pts = packet.dts = item[2]
                    packet.duration = item[3]
                    self._out.mux(packet)
                else:
                    if item[0] == "end":
                        self._out.mux(self._video.encode(None))
                    self._out.close()
                    self.seconds += time.perf_counter() - t0
                    return
                self.seconds += time.perf_counter() - t0
        except BaseException as exc:  # reported to the exporting thread by _put / finish
            self.error = exc
            try:
                self._out.close()
            except Exception:  # the export fails anyway; the file is removed
                pass

    def finish(self) -> None:
        """Flush the encoder, write the index (``+faststart`` moves it to the front), close."""
        self._put(("end",))
        self._thread.join()
        if self.error is not None:
            raise ExportError(f"encoding failed: {self.error}") from self.error

    def abort(self) -> None:
        """Stop without flushing (idempotent); the caller removes the file."""
        self._aborted = True
        while self._thread.is_alive():
            try:
                self._q.put(("abort",), timeout=0.2)
                break
            except queue.Full:
                try:
                    self._q.get_nowait()
                except queue.Empty:
                    pass
        self._thread.join()


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
                     redaction: RedactionConfig = RedactionConfig(), preset: str = "ultrafast",
                     crf: int = 23, threads: int = 0) -> ExportResult:
    """Export ``segments`` (in recording order) to ``out_path`` (MP4); see the module docstring.

    ``regions`` are in pixels of the exported frame size (the first segment's) and recording
    time. ``progress`` gets 0.0, then the share of output time done (at most every 1%), then
    1.0, from the calling thread. ``preset``/``crf``/``threads`` go to libx264 (``threads=0``:
    its own choice). Raises :class:`ExportCancelled` or :class:`ExportError`.
    """
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    tl = _scan(list(segments), include_audio)
    first = int(np.searchsorted(tl.video, start_s or 0.0))
    if first >= len(tl.video):
        raise ExportError("no video at or after start_s")
    window = _Mapping(tl, float(tl.video[first]), float("inf") if end_s is None else end_s)
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
    q: queue.Queue[tuple[Any, ...]] = queue.Queue(_QUEUE_FRAMES)
    stop = threading.Event()
    producer = threading.Thread(target=_decode, args=(tl, window, audio, q, stop, timings),
                                name=f"export-decode-{out_path.name}", daemon=True)
    encoder: _Encoder | None = None
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
            encoder = _Encoder(tmp, tl, audio, preset, crf, threads)
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
                    redaction: RedactionConfig = RedactionConfig(), quality: int = 85) -> ReviewFrame:
    """The first frame at or after recording time ``at_s`` (else the last frame), unredacted,
    with the boxes the export would blur (and the ones a keep region spares) drawn on it."""
    tl = _scan(list(segments), include_audio=False)
    seg = next((s for s in reversed(tl.segments) if s.first_s <= at_s), tl.segments[0])
    chosen = None
    with _open(seg.path) as c:
        v = c.streams.video[0]
        try:
            c.seek(int((at_s + tl.origin - seg.offset) / v.time_base), stream=v, backward=True)
        except av.FFmpegError:
            c.seek(0)
        for frame in c.decode(v):
            if frame.pts is None:
                continue
            chosen = frame
            if seg.offset + _seconds(frame.pts, frame.time_base) - tl.origin >= at_s - 1e-6:
                break
    if chosen is None:
        raise ExportError(f"no frame at {at_s:.3f} s")
    t = seg.offset + _seconds(chosen.pts, chosen.time_base) - tl.origin
    bgr = chosen.reformat(tl.width, tl.height, "bgr24").to_ndarray()
    auto = FaceDetector(redaction, tl.width, tl.height).detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)) \
        if redaction.auto else []
    blurred, kept = plan_boxes(auto, tuple(regions), t)
    jpeg = draw_review(bgr, blurred, kept, caption=f"T+{t:.2f}s", quality=quality)
    return ReviewFrame(jpeg, t, tl.width, tl.height, tuple(blurred), tuple(kept))


def _durable_hash(path: Path) -> tuple[str, int]:
    fsync_file(path)
    return sha256_file(path)

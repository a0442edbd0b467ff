"""Face redaction for party exports.

Faces are found with the frontal-face Haar cascade that the opencv-python 4.x wheels ship in
``cv2.data.haarcascades`` (nothing is downloaded), on a downscaled luma plane and only on some
frames; the approver adds blur regions and "keep" regions (an officer's face) on a keyframe.
Every box is blurred by pixelating it to about six blocks across and smoothing the blocks, in
all three planes of a yuv420p frame, so that no face detail survives.

Detections do not run on every frame. A frame is covered by the boxes of the last detection at or
before it, the first one after it and every detection within ``hold_s`` of it, each grown by
``margin``; a face moving between two detections stays inside the union of its two positions
(intersecting boxes are merged into their bounding box: one blur per face). This needs the
frames up to the next detection, which :class:`Redactor` buffers (``hold_s`` of video plus one
detection interval, about 0.5 s at the defaults).

Limits: the cascade finds frontal faces only (roughly ±30° of turn); profiles, faces under
48 px (at the defaults, on 640x480) and heavily occluded faces need a manual blur region, which
is why the approver reviews keyframes before release.

Coordinates are pixels of the frame as exported (the size of the first exported frame), times
are seconds of recording time (see :mod:`recordings.export`).
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal

import cv2
import numpy as np

AUTO_FACE = "auto:face"


@dataclass(frozen=True)
class Region:
    """An approver's region: ``"blur"`` adds a box, ``"keep"`` removes the automatic boxes it
    overlaps (by at least half of the smaller of the two) from ``start_s`` to ``end_s`` (end
    excluded). ``reason`` is recorded as ``manual:<reason>``."""

    x: int
    y: int
    w: int
    h: int
    start_s: float
    end_s: float
    action: Literal["blur", "keep"] = "blur"
    reason: str = ""

    def __post_init__(self) -> None:
        if self.action not in ("blur", "keep"):
            raise ValueError(f"region action must be 'blur' or 'keep', not {self.action!r}")
        if self.w <= 0 or self.h <= 0 or self.end_s <= self.start_s:
            raise ValueError("region must have positive size and end_s > start_s")

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.end_s

    @property
    def label(self) -> str:
        return f"manual:{self.reason or self.action}"


@dataclass(frozen=True)
class Box:
    """A rectangle in frame pixels and why it is there (``auto:face`` or ``manual:<reason>``)."""

    x: int
    y: int
    w: int
    h: int
    reason: str = AUTO_FACE

    def to_dict(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h, "reason": self.reason}


@dataclass(frozen=True)
class RedactionRecord:
    """Boxes blurred (and automatic boxes kept visible by a keep region) from ``start_s`` to
    ``end_s`` of recording time: one record per run of frames with the same boxes, which at the
    defaults is one detection interval."""

    start_s: float
    end_s: float
    blurred: tuple[Box, ...]
    kept: tuple[Box, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3),
                "blurred": [b.to_dict() for b in self.blurred], "kept": [b.to_dict() for b in self.kept]}


@dataclass(frozen=True)
class RedactionConfig:
    """Detector and blur settings. ``detect_every``: frames between detections (a detection also
    runs whenever ``hold_s`` has passed since the last one); ``detect_width``: the luma plane is
    downscaled to this width for detection, so the smallest face found is about
    ``24 * source_width / detect_width`` pixels wide (48 px on 640x480 at 320); ``auto=False``
    turns detection off (manual regions only)."""

    detect_every: int = 5
    detect_width: int = 320
    scale_factor: float = 1.15
    min_neighbors: int = 4
    margin: float = 0.25
    hold_s: float = 0.35
    blocks_across: int = 6
    auto: bool = True


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller area."""
    iw = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    ih = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    if iw <= 0 or ih <= 0:
        return 0.0
    return iw * ih / min(a.w * a.h, b.w * b.h)


class FaceDetector:
    """The shipped frontal-face cascade on a downscaled luma plane. Not thread-safe: one per
    export."""

    def __init__(self, config: RedactionConfig, width: int, height: int) -> None:
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"cannot load the Haar cascade {path}")
        self.config = config
        self.width, self.height = width, height
        self._scale = min(1.0, config.detect_width / width)
        self._small = (max(1, round(width * self._scale)), max(1, round(height * self._scale)))

    def detect(self, luma: np.ndarray) -> list[Box]:
        """Faces in a (height, width) uint8 luma plane, grown by ``margin`` and clipped."""
        cfg = self.config
        small = luma if self._scale == 1.0 else cv2.resize(luma, self._small, interpolation=cv2.INTER_AREA)
        found = self._cascade.detectMultiScale(small, scaleFactor=cfg.scale_factor,
                                               minNeighbors=cfg.min_neighbors, minSize=(24, 24))
        boxes = []
        for fx, fy, fw, fh in (found if len(found) else ()):
            x, y, w, h = (v / self._scale for v in (fx, fy, fw, fh))
            mx, my = w * cfg.margin, h * cfg.margin
            x0, y0 = max(0, int(x - mx)), max(0, int(y - my))
            x1, y1 = min(self.width, int(x + w + mx + 1)), min(self.height, int(y + h + my + 1))
            boxes.append(Box(x0, y0, x1 - x0, y1 - y0))
        return boxes


def merge_boxes(boxes: list[Box]) -> list[Box]:
    """Boxes of the same reason that intersect, replaced by their bounding box until none do
    (one blur per face instead of one per held detection)."""
    out = list(boxes)
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if a.reason == b.reason and _overlap(a, b) > 0:
                    x0, y0 = min(a.x, b.x), min(a.y, b.y)
                    x1, y1 = max(a.x + a.w, b.x + b.w), max(a.y + a.h, b.y + b.h)
                    out[i] = Box(x0, y0, x1 - x0, y1 - y0, a.reason)
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return out


def plan_boxes(auto: list[Box], regions: tuple[Region, ...], t: float) -> tuple[list[Box], list[Box]]:
    """(boxes to blur, automatic boxes kept visible) at recording time ``t``; the automatic boxes
    left to blur are merged where they intersect."""
    keeps = [Box(r.x, r.y, r.w, r.h, r.label) for r in regions if r.action == "keep" and r.active(t)]
    blur: list[Box] = []
    kept: list[Box] = []
    for box in auto:
        (kept if any(_overlap(box, k) >= 0.5 for k in keeps) else blur).append(box)
    manual = [Box(r.x, r.y, r.w, r.h, r.label) for r in regions if r.action == "blur" and r.active(t)]
    return merge_boxes(blur) + manual, kept


def _pixelate(plane: np.ndarray, x: int, y: int, w: int, h: int, blocks: int) -> None:
    roi = plane[y:y + h, x:x + w]
    if roi.size == 0:
        return
    # Average into blocks (about ``blocks`` across the shorter side), smooth the block grid, and
    # interpolate back: every pixel is a blend of a few block means, so no detail survives, and
    # the cost does not grow with the box (a Gaussian of the same strength at full size would
    # cost milliseconds per box).
    block = max(2, min(w, h) // blocks)
    small = cv2.resize(roi, (max(1, w // block), max(1, h // block)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (3, 3), 0.8, borderType=cv2.BORDER_REPLICATE)
    roi[:] = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def blur_yuv420(yuv: np.ndarray, width: int, height: int, boxes: list[Box], blocks_across: int = 6) -> None:
    """Blur ``boxes`` in place in a packed yuv420p array of shape (height * 3 / 2, width), as
    ``av.VideoFrame.to_ndarray()`` returns it (even width and height)."""
    if not boxes:
        return
    luma = yuv[:height]
    quarter = height // 4
    chroma = [yuv[height + i * quarter:height + (i + 1) * quarter].reshape(height // 2, width // 2)
              for i in (0, 1)]
    for b in boxes:
        x0, y0 = max(0, b.x) & ~1, max(0, b.y) & ~1
        x1, y1 = min(width, b.x + b.w + 1) & ~1, min(height, b.y + b.h + 1) & ~1
        if x1 <= x0 or y1 <= y0:
            continue
        _pixelate(luma, x0, y0, x1 - x0, y1 - y0, blocks_across)
        for plane in chroma:
            _pixelate(plane, x0 // 2, y0 // 2, (x1 - x0) // 2, (y1 - y0) // 2, blocks_across)


@dataclass
class _Pending:
    t: float
    yuv: np.ndarray
    item: Any


@dataclass
class Redactor:
    """Streams frames through detection and blur with the lookahead described in the module
    docstring. :meth:`push` and :meth:`flush` yield ``(item, yuv)`` in input order once a frame's
    boxes are final, blurred in place. ``records`` lists what was blurred, ``timings`` the
    seconds spent detecting and blurring."""

    config: RedactionConfig
    regions: tuple[Region, ...]
    width: int
    height: int
    records: list[RedactionRecord] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: {"detect": 0.0, "blur": 0.0})

    def __post_init__(self) -> None:
        self._detector = FaceDetector(self.config, self.width, self.height) if self.config.auto else None
        self._pending: collections.deque[_Pending] = collections.deque()
        self._detections: collections.deque[tuple[float, list[Box]]] = collections.deque()
        self._since_detect = 0
        self._open: tuple[float, float, tuple[Box, ...], tuple[Box, ...]] | None = None

    def push(self, t: float, yuv: np.ndarray, item: Any = None) -> Iterator[tuple[Any, np.ndarray]]:
        if self._detector is not None:
            last = self._detections[-1][0] if self._detections else None
            if last is None or self._since_detect >= self.config.detect_every or t - last > self.config.hold_s:
                t0 = time.perf_counter()
                self._detections.append((t, self._detector.detect(yuv[:self.height])))
                self.timings["detect"] += time.perf_counter() - t0
                self._since_detect = 0
            self._since_detect += 1
        self._pending.append(_Pending(t, yuv, item))
        newest = self._detections[-1][0] if self._detections else t
        while self._pending and (self._detector is None or self._pending[0].t + self.config.hold_s <= newest):
            yield self._release(self._pending.popleft())

    def flush(self, end_s: float | None = None) -> Iterator[tuple[Any, np.ndarray]]:
        """Release the frames still held; ``end_s`` (the end of the last frame) closes the last
        record, which otherwise ends at the last frame's start."""
        while self._pending:
            yield self._release(self._pending.popleft())
        self._close_record(end_s)

    def _auto_boxes(self, t: float) -> list[Box]:
        dets = self._detections
        while len(dets) > 1 and dets[1][0] <= t - self.config.hold_s:
            dets.popleft()  # detections older than the hold and not the last one before t
        before = max((i for i, (td, _) in enumerate(dets) if td <= t), default=None)
        after = min((i for i, (td, _) in enumerate(dets) if td > t), default=None)
        boxes: list[Box] = []
        for i, (td, found) in enumerate(dets):
            if i == before or i == after or abs(td - t) <= self.config.hold_s:
                boxes += [b for b in found if b not in boxes]
        return boxes

    def _release(self, p: _Pending) -> tuple[Any, np.ndarray]:
        auto = self._auto_boxes(p.t) if self._detector is not None else []
        blur, kept = plan_boxes(auto, self.regions, p.t)
        t0 = time.perf_counter()
        blur_yuv420(p.yuv, self.width, self.height, blur, self.config.blocks_across)
        self.timings["blur"] += time.perf_counter() - t0
        self._note(p.t, tuple(blur), tuple(kept))
        return p.item, p.yuv

    def _note(self, t: float, blur: tuple[Box, ...], kept: tuple[Box, ...]) -> None:
        if self._open and self._open[2:] == (blur, kept):
            self._open = (self._open[0], t, blur, kept)
            return
        self._close_record(t)
        self._open = (t, t, blur, kept) if blur or kept else None

    def _close_record(self, t: float | None) -> None:
        if self._open:
            start, last, blur, kept = self._open
            self.records.append(RedactionRecord(start, t if t is not None else last, blur, kept))
        self._open = None


def draw_review(bgr: np.ndarray, blurred: list[Box], kept: list[Box], caption: str = "",
                quality: int = 85) -> bytes:
    """JPEG of an unredacted frame for the approver: boxes to be blurred in red (automatic) or
    orange (manual), automatic boxes that a keep region spares in green, each labelled."""
    img = bgr.copy()
    for box, colour in [(b, (0, 0, 255) if b.reason == AUTO_FACE else (0, 140, 255)) for b in blurred] + \
            [(b, (0, 200, 0)) for b in kept]:
        cv2.rectangle(img, (box.x, box.y), (box.x + box.w - 1, box.y + box.h - 1), colour, 2)
        label = box.reason if colour != (0, 200, 0) else f"keep ({box.reason})"
        cv2.putText(img, label, (box.x + 2, max(12, box.y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1,
                    cv2.LINE_AA)
    if caption:
        cv2.putText(img, caption, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, caption, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return jpeg.tobytes()

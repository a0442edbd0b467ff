"""Visible watermark of a party export: who it was made for, when, and the recording time of
every frame, in the court's time zone; no internal identifier (request or package ids stay in
the signed manifest).

Two lines in a band at the bottom (or top) of every frame, white with a black outline so that the
text stays readable on any background, drawn with ``cv2.putText`` straight into the planes of a
yuv420p frame (the chroma under the text is set to grey, so the text is neutral on coloured
scenes)::

    TO Zhang San (P-17) | EXPORTED 2026-11-28 05:40 +08:00
    REC 2026-11-27 17:12:03.120 +08:00  T+00:01:23.450

Times are shown in ``tz`` (the court's zone, ``[party] time_zone``, Asia/Shanghai by default)
with its UTC offset, so that the copy reads as the court's documents do.

With a font that has Chinese glyphs (``font``: the court's ``[party] watermark_font``, or one
found on the machine by :func:`find_cjk_font`; Debian's ``fonts-noto-cjk``), the first line is
drawn in Chinese, with the recipient's name as written::

    提供给 张三（P-17） | 导出于 2026-11-28 05:40 +08:00

It is rendered once per export (Pillow) into two coverage masks, outline and fill, which are
blended into every frame's planes, so a frame costs a few array operations over the band.

Without such a font, OpenCV's Hershey fonts (ASCII only) draw it in English: a recipient name
with other letters is reduced to ASCII (accents dropped: "José" → "Jose"); a name that cannot be
(Chinese, 张三) is shown as ``recipient_id`` when the caller gives one (the party's id or a
pinyin spelling from the case file), else as ``name#`` and the first 8 hex digits of the SHA-256
of its UTF-8 bytes, which the export manifest can tie back to the name. The first line shrinks to
fit the frame width.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

logger = logging.getLogger(__name__)

_FONT = cv2.FONT_HERSHEY_SIMPLEX
# Where Debian's CJK font packages put a font with Simplified Chinese glyphs (fonts-noto-cjk, fonts-wqy-*).
CJK_FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Medium.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)
_WHITE_Y, _BLACK_Y = 235, 16  # video-range luma


@dataclass(frozen=True)
class WatermarkSpec:
    """``exported_at`` is an aware datetime. ``recorded_from``, when known, is the wall-clock time
    of recording time 0; each frame then shows its own time as well. Both are shown in ``tz``."""

    recipient: str
    exported_at: dt.datetime
    recipient_id: str | None = None
    recorded_from: dt.datetime | None = None
    position: Literal["bottom", "top"] = "bottom"
    tz: dt.tzinfo = dt.timezone.utc
    font: str | None = None  # a font file with Chinese glyphs: the first line is then drawn in Chinese

    def __post_init__(self) -> None:
        if self.exported_at.tzinfo is None:
            raise ValueError("exported_at must be timezone-aware")
        if self.recorded_from is not None and self.recorded_from.tzinfo is None:
            raise ValueError("recorded_from must be timezone-aware")
        if self.position not in ("bottom", "top"):
            raise ValueError(f"watermark position must be 'bottom' or 'top', not {self.position!r}")


def ascii_text(text: str) -> str | None:
    """``text`` reduced to printable ASCII (accents dropped), or None if letters would be lost."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    if not folded.isascii():
        return None
    return "".join(c if c.isprintable() else " " for c in folded).strip()


def recipient_label(spec: WatermarkSpec) -> str:
    """The recipient as drawn: see the module docstring."""
    name = ascii_text(spec.recipient)
    ident = ascii_text(spec.recipient_id) if spec.recipient_id else None
    if name and ident:
        return f"{name} ({ident})"
    if name or ident:
        return name or ident or ""
    return "name#" + hashlib.sha256(spec.recipient.encode("utf-8")).hexdigest()[:8]


@functools.lru_cache(maxsize=8)
def find_cjk_font(configured: str = "") -> str | None:
    """The font file to draw Chinese with: ``configured`` when given (it must exist), else the first
    of :data:`CJK_FONT_CANDIDATES` present, else what fontconfig offers for ``zh-cn``; None when the
    machine has no such font (the watermark is then drawn in English)."""
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"watermark font {configured!r} does not exist")
        return str(path)
    for candidate in CJK_FONT_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    fc_match = shutil.which("fc-match")
    if fc_match:
        try:
            out = subprocess.run([fc_match, "-f", "%{file}", ":lang=zh-cn"], capture_output=True, text=True,
                                 timeout=10, check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and Path(out).is_file() and _has_glyphs(out, "提供给张三"):
            return out
    logger.warning("no font with Chinese glyphs (install fonts-noto-cjk or set [party] watermark_font): "
                   "export watermarks are drawn in English, Chinese names as name#<hash>")
    return None


def _has_glyphs(font_path: str, text: str) -> bool:
    from PIL import ImageFont

    try:
        font = ImageFont.truetype(font_path, 24)
    except OSError:
        return False
    blank = font.getmask("\uffff").getbbox()
    return all(font.getmask(c).getbbox() not in (None, blank) for c in text)


def chinese_header(spec: WatermarkSpec) -> str:
    """The first line as drawn with a Chinese font: the recipient's name as written, with their id."""
    name = " ".join(spec.recipient.split())
    ident = f"（{spec.recipient_id}）" if spec.recipient_id else ""
    return f"提供给 {name}{ident} | 导出于 {_local(spec.exported_at, spec.tz, '%Y-%m-%d %H:%M')}"


class _Glyphs:
    """A line of text rendered once with Pillow into two coverage masks (outline, fill), 0..1."""

    def __init__(self, text: str, font_path: str, height_px: int, max_width: int, stroke: int) -> None:
        from PIL import Image, ImageDraw, ImageFont

        size = max(8, height_px)
        while True:
            font = ImageFont.truetype(font_path, size)
            left, top, right, bottom = (int(v) for v in font.getbbox(text, stroke_width=stroke))
            if right - left <= max_width or size <= 8:
                break
            size = max(8, int(size * max_width / (right - left)))
        self.font_size = size
        w, h = right - left + 2, bottom - top + 2
        outline, fill = Image.new("L", (w, h), 0), Image.new("L", (w, h), 0)
        ImageDraw.Draw(outline).text((1 - left, 1 - top), text, font=font, fill=255, stroke_width=stroke,
                                     stroke_fill=255)
        ImageDraw.Draw(fill).text((1 - left, 1 - top), text, font=font, fill=255)
        self.outline = np.asarray(outline, dtype=np.float32)[: h & ~1, : w & ~1] / 255.0
        self.fill = np.asarray(fill, dtype=np.float32)[: h & ~1, : w & ~1] / 255.0
        self.height, self.width = self.fill.shape
        half = self.outline.reshape(self.height // 2, 2, self.width // 2, 2).max(axis=(1, 3))
        self.chroma_mask = half > 0.25

    def draw(self, luma: np.ndarray, chroma: list[np.ndarray], x: int, y: int) -> None:
        """Blend into the planes with the top-left corner at (x, y) (even), cut at the frame's edges."""
        h = max(0, min(self.height, luma.shape[0] - y))
        w = max(0, min(self.width, luma.shape[1] - x))
        if not h or not w:
            return
        region = luma[y:y + h, x:x + w].astype(np.float32)
        region += (_BLACK_Y - region) * self.outline[:h, :w]
        region += (_WHITE_Y - region) * self.fill[:h, :w]
        luma[y:y + h, x:x + w] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
        mask = self.chroma_mask[: h // 2, : w // 2]
        for plane in chroma:
            plane[y // 2:y // 2 + mask.shape[0], x // 2:x // 2 + mask.shape[1]][mask] = 128


def _local(d: dt.datetime, tz: dt.tzinfo, fmt: str, millis: bool = False) -> str:
    """``d`` in ``tz`` as ``fmt`` (``millis``: and ``.mmm``), then its UTC offset as ``+08:00``."""
    local = d.astimezone(tz)
    offset = local.strftime("%z")
    text = local.strftime(fmt) + (f".{local.microsecond // 1000:03d}" if millis else "")
    return f"{text} {offset[:3]}:{offset[3:]}"


def frame_time_text(spec: WatermarkSpec, t_s: float, note: str = "") -> str:
    """The second line for recording time ``t_s``."""
    ms = max(0, round(t_s * 1000))
    clock = f"T+{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"
    parts = []
    if spec.recorded_from is not None:
        wall = spec.recorded_from + dt.timedelta(milliseconds=ms)
        parts.append("REC " + _local(wall, spec.tz, "%Y-%m-%d %H:%M:%S", millis=True))
    parts.append(clock)
    if note:
        parts.append(note)
    return "  ".join(parts)


class Watermarker:
    """Draws the watermark of one export into (height * 3 / 2, width) yuv420p arrays."""

    def __init__(self, spec: WatermarkSpec, width: int, height: int) -> None:
        self.spec, self.width, self.height = spec, width, height
        self.thickness = max(1, round(width / 640))
        self.pad = max(4, width // 80)
        header = f"TO {recipient_label(spec)} | EXPORTED {_local(spec.exported_at, spec.tz, '%Y-%m-%d %H:%M')}"
        base_scale = 0.5 * width / 640
        (w, _), _ = cv2.getTextSize(header, _FONT, base_scale, self.thickness + 2)
        self.header_scale = min(base_scale, base_scale * (width - 2 * self.pad) / max(1, w))
        self.time_scale = base_scale
        self.line_h = cv2.getTextSize("Ag", _FONT, base_scale, self.thickness + 2)[0][1] * 2 + 1 & ~1
        self.band_h = min(height & ~1, (2 * self.line_h + self.pad) + 1 & ~1)
        self.band_y = height - self.band_h if spec.position == "bottom" else 0
        self.header_text = header
        self.glyphs: _Glyphs | None = None
        if spec.font:
            self.header_text = chinese_header(spec)
            self.glyphs = _Glyphs(self.header_text, spec.font, self.line_h * 4 // 5, width - 2 * self.pad,
                                  self.thickness + 1)

    def apply(self, yuv: np.ndarray, t_s: float, note: str = "") -> None:
        """Draw both lines for recording time ``t_s`` (``note``, e.g. a gap marker, is appended to
        the time line). ``cv2.putText`` draws straight into the plane views: outline then fill
        in luma (the fill anti-aliased), and the outline at half scale in both chroma planes."""
        w, h = self.width, self.height
        quarter = h // 4
        luma = yuv[:h]
        chroma = [yuv[h + i * quarter:h + (i + 1) * quarter].reshape(h // 2, w // 2) for i in (0, 1)]
        lines = ((self.header_text, self.header_scale), (frame_time_text(self.spec, t_s, note), self.time_scale))
        for n, (text, scale) in enumerate(lines):
            top = min(self.band_y + self.pad // 2 + n * self.line_h, h - self.line_h)
            if n == 0 and self.glyphs is not None:
                self.glyphs.draw(luma, chroma, self.pad & ~1, top + (self.line_h - self.glyphs.height) // 2 & ~1)
                continue
            x, y = self.pad, top + self.line_h * 3 // 4
            for plane in chroma:
                cv2.putText(plane, text, (x // 2, y // 2), _FONT, scale / 2, 128, self.thickness + 1, cv2.LINE_8)
            cv2.putText(luma, text, (x, y), _FONT, scale, _BLACK_Y, self.thickness + 2, cv2.LINE_8)
            cv2.putText(luma, text, (x, y), _FONT, scale, _WHITE_Y, self.thickness, cv2.LINE_AA)

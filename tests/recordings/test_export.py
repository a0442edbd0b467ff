"""Party export: a synthetic two-segment recording with drawn faces goes through
``export_recording`` and the output frames are checked with OpenCV.

The clip (640x480, 30 fps, VP8 + Opus WebM, written by the test with PyAV) has a face that moves
(a bystander, to be blurred), a face that stays put (the officer, spared by a "keep" region), a
textured patch with no face (must come through unchanged) and a 4 s gap between its two
segments. Every check on the output is made against the decoded input, and the test first
asserts that the cascade finds both faces in the input, so it cannot pass on frames without
detectable faces.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import av
import cv2
import numpy as np
import pytest

from recordings.export import ExportCancelled, ExportResult, export_recording, review_keyframe
from recordings.redaction import Region
from recordings.watermark import Watermarker, WatermarkSpec, find_cjk_font, frame_time_text, recipient_label
from tests.support.watermark import name_score

FFPROBE = "/usr/bin/ffprobe"
W, H, FPS = 640, 480, 30
SEG_FRAMES = 45  # 1.5 s per segment
GAP_START_S = 4.0  # the second segment starts 4 s after the first one's start + 1.5 s
FACE = 110
A_Y, B_X, B_Y = 140, 440, 140  # A moves right from x=60 at 2 px per frame; B stays
PATCH = (20, 10, 120, 80)  # x, y, w, h: texture, no face
CASCADE = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")  # type: ignore[attr-defined]
SPEC = WatermarkSpec("张三", dt.datetime(2026, 11, 27, 21, 40, tzinfo=dt.timezone.utc),
                     recipient_id="P-17", recorded_from=dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.timezone.utc))
KEEP_B = Region(B_X - 15, B_Y - 15, FACE + 30, FACE + 30, 0.0, 100.0, "keep", "officer")


def draw_face(size: int, seed: int) -> np.ndarray:
    """A grey frontal face (skin oval, eye sockets, eyes, brows, nose, mouth) with skin
    texture; the frontal-face cascade finds it from about 40 px up."""
    g: np.ndarray = np.full((size, size), 70, np.float32)
    c = size // 2

    def ellipse(x: float, y: float, ax: float, ay: float, value: int) -> None:
        cv2.ellipse(g, (int(c + x * size), int(c + y * size)), (max(1, int(ax * size)), max(1, int(ay * size))),
                    0, 0, 360, value, -1)

    ellipse(0, 0, 0.38, 0.48, 200)
    for side in (-1, 1):
        ellipse(side * 0.17, -0.08, 0.11, 0.06, 130)
        ellipse(side * 0.17, -0.08, 0.06, 0.03, 40)
        ellipse(side * 0.17, -0.18, 0.10, 0.02, 50)
    ellipse(0, 0.08, 0.05, 0.03, 110)
    ellipse(0, 0.24, 0.12, 0.03, 70)
    g = cv2.GaussianBlur(g, (0, 0), size / 100)
    g += np.random.default_rng(seed).normal(0, 12, g.shape).astype(np.float32)
    return cv2.cvtColor(np.clip(g, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def watermarked(marker: Watermarker, bgr: np.ndarray, t_s: float, note: str = "") -> np.ndarray:
    """What the watermark makes of a BGR image: drawn into its yuv420p planes, as the export does."""
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    marker.apply(yuv, t_s, note)
    return cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)


def a_x(i: int) -> int:
    return 60 + 2 * i


def background(frames: int) -> np.ndarray:
    """Smooth shading, wide enough to pan 3 px per frame."""
    yy, xx = np.meshgrid(np.arange(H, dtype=np.float32), np.arange(W + 3 * frames, dtype=np.float32), indexing="ij")
    b = 90 + 50 * np.sin(xx / 97) * np.cos(yy / 71)
    return np.stack([b, b * 0.9 + 20, b * 0.8 + 30], -1).clip(0, 255).astype(np.uint8)


def render(i: int, faces: list[np.ndarray], bg: np.ndarray) -> np.ndarray:
    img = bg[:, 3 * i:3 * i + W].copy()
    x, y, w, h = PATCH
    img[y:y + h, x:x + w] = (np.indices((h, w)).sum(0) // 6 % 2 * 120 + 60)[..., None].astype(np.uint8)
    img[A_Y:A_Y + FACE, a_x(i):a_x(i) + FACE] = faces[0]
    img[B_Y:B_Y + FACE, B_X:B_X + FACE] = faces[1]
    return img


def write_segment(path: Path, frames: list[np.ndarray], start_s: float) -> None:
    """VP8 + Opus WebM; video pts on a 1/90000 clock, audio 1/48000, both from ``start_s``."""
    with av.open(str(path), "w", format="webm") as out:
        v = out.add_stream("libvpx", rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        v.bit_rate = 2_000_000
        v.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        v.codec_context.thread_count = 1  # libvpx threads are slow on a busy machine
        a = out.add_stream("libopus", rate=48_000)
        a.layout = "mono"
        for n, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts, frame.time_base = round((start_s + n / FPS) * 90_000), Fraction(1, 90_000)
            out.mux(v.encode(frame))
        a0 = round(start_s * 48_000)
        for k in range(len(frames) * 48_000 // FPS // 960):
            pcm = 0.2 * np.sin(2 * np.pi * 440 * (np.arange(960) + k * 960) / 48_000)
            af = av.AudioFrame.from_ndarray(pcm.astype(np.float32)[None], format="flt", layout="mono")
            af.sample_rate, af.pts, af.time_base = 48_000, a0 + k * 960, Fraction(1, 48_000)
            out.mux(a.encode(af))
        out.mux(v.encode(None))
        out.mux(a.encode(None))


def decode_bgr(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def faces_in(img: np.ndarray) -> list[tuple[int, int, int, int]]:
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return [(int(x), int(y), int(w), int(h)) for x, y, w, h in CASCADE.detectMultiScale(gray, 1.1, 4, minSize=(40, 40))]


def near(boxes: list[tuple[int, int, int, int]], x: int, y: int) -> bool:
    return any(abs(bx + bw / 2 - (x + FACE / 2)) < FACE / 2 and abs(by + bh / 2 - (y + FACE / 2)) < FACE / 2
               for bx, by, bw, bh in boxes)


def sharpness(img: np.ndarray, x: int, y: int, w: int, h: int) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(img[y:y + h, x:x + w], cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def ffprobe(path: Path) -> dict[str, Any]:
    run = subprocess.run([FFPROBE, "-v", "error", "-show_entries", "format=duration:stream=codec_name",
                          "-of", "json", str(path)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    return dict(json.loads(run.stdout))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def in_time(i: int) -> float:
    """Recording time of input frame ``i`` (the second segment starts after the gap)."""
    return i / FPS if i < SEG_FRAMES else GAP_START_S + 1.5 + (i - SEG_FRAMES) / FPS


@dataclass
class Exported:
    segments: list[Path]
    inputs: list[np.ndarray]
    outputs: list[np.ndarray]
    result: ExportResult
    progress: list[float]
    hashes_before: list[str]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    tmp = tmp_path_factory.mktemp("export")
    faces = [draw_face(FACE, 1), draw_face(FACE, 2)]
    bg = background(2 * SEG_FRAMES)
    images = [render(i, faces, bg) for i in range(2 * SEG_FRAMES)]
    segments = [tmp / "000001.webm", tmp / "000002.webm"]
    write_segment(segments[0], images[:SEG_FRAMES], 0.0)
    write_segment(segments[1], images[SEG_FRAMES:], GAP_START_S + 1.5)
    before = [sha256(p) for p in segments]
    progress: list[float] = []
    result = export_recording(segments, tmp / "export.mp4", regions=[KEEP_B], watermark=SPEC,
                              progress=progress.append)
    return Exported(segments, decode_bgr(segments[0]) + decode_bgr(segments[1]), decode_bgr(result.path),
                    result, progress, before)


SAMPLES = range(0, 2 * SEG_FRAMES, 10)


def test_input_faces_are_detectable(exported: Exported) -> None:
    for i in SAMPLES:
        found = faces_in(exported.inputs[i])
        assert near(found, a_x(i), A_Y) and near(found, B_X, B_Y), (i, found)


def test_bystander_face_is_blurred(exported: Exported) -> None:
    assert len(exported.outputs) == len(exported.inputs) == exported.result.frames
    for i in SAMPLES:
        assert not near(faces_in(exported.outputs[i]), a_x(i), A_Y), i
        box = (a_x(i), A_Y, FACE, FACE)
        assert sharpness(exported.outputs[i], *box) < 0.05 * sharpness(exported.inputs[i], *box), i
    assert any(b.reason == "auto:face" for r in exported.result.redactions for b in r.blurred)


def test_keep_region_spares_the_officer_face(exported: Exported) -> None:
    for i in SAMPLES:
        assert near(faces_in(exported.outputs[i]), B_X, B_Y), i
        box = (B_X, B_Y, FACE, FACE)
        assert sharpness(exported.outputs[i], *box) > 0.3 * sharpness(exported.inputs[i], *box), i
    kept = [b for r in exported.result.redactions for b in r.kept]
    assert kept and all(b.reason == "auto:face" and abs(b.x - B_X) < FACE for b in kept)


def test_region_without_faces_is_unchanged(exported: Exported) -> None:
    x, y, w, h = PATCH
    for i in SAMPLES:
        diff = np.abs(exported.outputs[i][y:y + h, x:x + w].astype(int) - exported.inputs[i][y:y + h, x:x + w])
        assert diff.mean() < 8, (i, diff.mean())


def test_watermark_is_on_every_frame(exported: Exported) -> None:
    marker = Watermarker(SPEC, W, H)
    band = slice(marker.band_y, H)
    for i in range(0, 2 * SEG_FRAMES, 5):
        out, src = exported.outputs[i][band].astype(int), exported.inputs[i]
        note = "AFTER GAP 4.0s" if i >= SEG_FRAMES else ""
        expected = watermarked(marker, src, in_time(i), note)[band].astype(int)
        changed = (np.abs(out - src[band]).max(axis=2) > 60).mean()
        assert changed > 0.03, (i, changed)  # text pixels, black and white, in the band
        assert np.abs(out - expected).mean() < 0.4 * np.abs(out - src[band]).mean(), i
    gap_frame = exported.outputs[SEG_FRAMES][band].astype(int)
    with_note = watermarked(marker, exported.inputs[SEG_FRAMES], in_time(SEG_FRAMES), "AFTER GAP 4.0s")[band]
    without = watermarked(marker, exported.inputs[SEG_FRAMES], in_time(SEG_FRAMES))[band]
    assert np.abs(gap_frame - with_note).mean() < np.abs(gap_frame - without).mean()


def test_output_plays_with_gap_collapsed(exported: Exported) -> None:
    r = exported.result
    probe = ffprobe(r.path)
    assert sorted(s["codec_name"] for s in probe["streams"]) == ["h264", "opus"]
    assert abs(float(probe["format"]["duration"]) - 2 * SEG_FRAMES / FPS) < 0.5
    assert abs(r.duration_s - 2 * SEG_FRAMES / FPS) < 0.5
    assert len(r.gaps) == 1 and abs(r.gaps[0].end_s - r.gaps[0].start_s - 4.0) < 0.1
    assert r.sha256 == sha256(r.path) and r.bytes == r.path.stat().st_size
    assert r.audio_codec == "opus" and not r.path.with_name(r.path.name + ".part").exists()
    assert [sha256(p) for p in exported.segments] == exported.hashes_before
    assert exported.progress[0] == 0.0 and exported.progress[-1] == 1.0
    assert exported.progress == sorted(exported.progress)
    json.dumps(r.to_dict())


def test_time_range_and_manual_region(exported: Exported, tmp_path: Path) -> None:
    plate = Region(*PATCH, 0.0, 100.0, "blur", "plate")
    r = export_recording(exported.segments, tmp_path / "cut.mp4", start_s=0.5, end_s=5.9,
                         regions=[plate, KEEP_B], watermark=SPEC, include_audio=False)
    frames = decode_bgr(r.path)
    assert r.frames == len(frames) == 30 + 12  # 0.5-1.5 s, then 5.5-5.9 s after the gap
    assert abs(float(ffprobe(r.path)["format"]["duration"]) - 42 / FPS) < 0.5
    assert r.audio_codec is None
    assert sharpness(frames[0], *PATCH) < 0.05 * sharpness(exported.inputs[15], *PATCH)
    assert any(b.reason == "manual:plate" for rec in r.redactions for b in rec.blurred)


def test_cancelled_export_leaves_nothing(exported: Exported, tmp_path: Path) -> None:
    cancel = threading.Event()
    out = tmp_path / "cancelled.mp4"

    def progress(share: float) -> None:
        if share > 0.2:
            cancel.set()

    with pytest.raises(ExportCancelled):
        export_recording(exported.segments, out, watermark=SPEC, progress=progress, cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def test_review_keyframe_shows_planned_boxes(exported: Exported) -> None:
    review = review_keyframe(exported.segments, 1.0, regions=[KEEP_B])
    img = cv2.imdecode(np.frombuffer(review.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == (H, W, 3) and abs(review.time_s - 1.0) < 1 / FPS
    i = round(review.time_s * FPS)
    assert near([(b.x, b.y, b.w, b.h) for b in review.blurred], a_x(i), A_Y)
    assert near([(b.x, b.y, b.w, b.h) for b in review.kept], B_X, B_Y)


def test_recipient_shown_in_ascii() -> None:
    now = dt.datetime.now(dt.timezone.utc)
    assert recipient_label(WatermarkSpec("张三", now, recipient_id="P-17")) == "P-17"
    assert recipient_label(WatermarkSpec("José Núñez", now)) == "Jose Nunez"
    hashed = recipient_label(WatermarkSpec("张三", now))
    assert hashed == "name#" + hashlib.sha256("张三".encode()).hexdigest()[:8]


def test_the_watermark_shows_the_court_time_zone_and_no_internal_id() -> None:
    spec = WatermarkSpec("张三", dt.datetime(2026, 11, 27, 21, 40, tzinfo=dt.timezone.utc), recipient_id="P-17",
                         recorded_from=dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.timezone.utc),
                         tz=ZoneInfo("Asia/Shanghai"))
    assert Watermarker(spec, 640, 480).header_text == "TO P-17 | EXPORTED 2026-11-28 05:40 +08:00"
    assert frame_time_text(spec, 83.45) == "REC 2026-11-27 17:01:23.450 +08:00  T+00:01:23.450"


def _luma_of(marker: Watermarker, w: int, h: int) -> np.ndarray:
    yuv = cv2.cvtColor(np.full((h, w, 3), (40, 120, 200), np.uint8), cv2.COLOR_BGR2YUV_I420)
    marker.apply(yuv, 83.45)
    return yuv[:h]


def test_with_a_chinese_font_the_recipient_is_shown_as_written() -> None:
    font = find_cjk_font()
    assert font, "make test installs fonts-noto-cjk"
    when = dt.datetime(2026, 11, 27, 21, 40, tzinfo=dt.timezone.utc)
    tz = ZoneInfo("Asia/Shanghai")
    zhang = Watermarker(WatermarkSpec("张三", when, recipient_id="P-17", tz=tz, font=font), 640, 480)
    li = Watermarker(WatermarkSpec("李四", when, recipient_id="P-17", tz=tz, font=font), 640, 480)
    assert zhang.header_text == "提供给 张三（P-17） | 导出于 2026-11-28 05:40 +08:00"
    assert zhang.glyphs is not None and zhang.glyphs.width <= 640
    # The name, drawn on its own at the size the watermark used, is found in the frame's band and not
    # in the frame made for someone else.
    band = slice(zhang.band_y, 480)
    found = name_score(_luma_of(zhang, 640, 480)[band], "张三", font, zhang.glyphs.font_size)
    other = name_score(_luma_of(li, 640, 480)[band], "张三", font, zhang.glyphs.font_size)
    assert found > 0.65 and other < found - 0.2, (found, other)
    # A small frame still gets the whole line.
    small = Watermarker(WatermarkSpec("张三", when, tz=tz, font=font), 320, 240)
    assert small.glyphs is not None and small.glyphs.width <= 320 - 2 * small.pad


def test_a_configured_font_that_is_missing_is_refused() -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_cjk_font("/nonexistent/font.ttc")

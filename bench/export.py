"""Party export benchmark: redacted, watermarked export of a 640x480 30 fps recording, as a
multiple of real time, against a plain decode + encode of the same segments in the same run.

    python -m bench.export [--minutes 10] [--repeats 1] [--preset ultrafast] [--detect-every 5]

The source is made once and cached under ``bench/results/export-src-<minutes>m/`` (gitignored):
VP8 + Opus WebM segments of 10 s, as the archive stores them, with a drawn face that moves
across a background of moving, noisy texture (so both encoders have real work and the detector
sees a face in every frame). Each repeat runs, one after the other:

- **baseline**: decode every frame (PyAV, frame threads) and encode it with the same libx264
  settings into MP4, Opus copied: what any export costs before redaction and watermark;
- **export**: ``recordings.export.export_recording`` with face detection, blur and watermark.

Reports wall time, real-time multiple (recording seconds / wall seconds), process CPU seconds,
the export's per-stage seconds, CPU count and load average (the machine is shared: compare the
two rows of the same repeat and quote medians).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import statistics
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import av
import cv2
import numpy as np

from bench.harness import REPO, write_result
from recordings.export import export_recording
from recordings.redaction import RedactionConfig
from recordings.watermark import WatermarkSpec

W, H, FPS, SEGMENT_S = 640, 480, 30, 10


def draw_face(size: int) -> np.ndarray:
    """A grey frontal face the shipped Haar cascade detects (as in tests/recordings)."""
    g = np.full((size, size), 70, np.float32)
    c = size // 2
    for x, y, ax, ay, v in [(0, 0, .38, .48, 200), (-.17, -.08, .11, .06, 130), (.17, -.08, .11, .06, 130),
                            (-.17, -.08, .06, .03, 40), (.17, -.08, .06, .03, 40), (-.17, -.18, .10, .02, 50),
                            (.17, -.18, .10, .02, 50), (0, .08, .05, .03, 110), (0, .24, .12, .03, 70)]:
        cv2.ellipse(g, (int(c + x * size), int(c + y * size)), (int(ax * size), int(ay * size)), 0, 0, 360, v, -1)
    blurred = cv2.GaussianBlur(g, (0, 0), size / 100)
    return cv2.cvtColor(np.clip(blurred, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def make_source(directory: Path, minutes: float) -> list[Path]:
    """VP8 + Opus segments of ``SEGMENT_S``; reused when ``directory/complete`` exists."""
    done = directory / "complete"
    if done.exists():
        return sorted(directory.glob("*.webm"))
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.webm"):
        old.unlink()
    rng = np.random.default_rng(1)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (2 * H, 2 * W, 3), np.uint8), (0, 0), 3)
    face = draw_face(120)
    total = round(minutes * 60 * FPS)
    per = SEGMENT_S * FPS
    t0 = time.perf_counter()
    for first in range(0, total, per):
        with av.open(str(directory / f"{first // per + 1:06d}.webm"), "w", format="webm") as out:
            v = out.add_stream("libvpx", rate=FPS)
            v.width, v.height, v.pix_fmt, v.bit_rate = W, H, "yuv420p", 1_000_000
            v.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}  # as WebRTC sends
            v.codec_context.thread_count = 1  # libvpx threads spin badly on a busy machine
            a = out.add_stream("libopus", rate=48_000)
            a.layout = "mono"
            apts = first * 48_000 // FPS
            for i in range(first, min(first + per, total)):
                ox, oy = int(100 * np.sin(i / 40)), int(50 * np.cos(i / 70))
                img = texture[H // 2 + oy:H // 2 + oy + H, W // 2 + ox:W // 2 + ox + W].astype(np.int16)
                img = np.clip(img + rng.integers(-12, 12, img.shape, np.int16), 0, 255).astype(np.uint8)
                fx, fy = 260 + int(150 * np.sin(i / 25)), 150 + int(60 * np.cos(i / 33))
                img[fy:fy + 120, fx:fx + 120] = face
                frame = av.VideoFrame.from_ndarray(img, format="bgr24")
                frame.pts, frame.time_base = i * 90_000 // FPS, Fraction(1, 90_000)
                out.mux(v.encode(frame))
                while apts < (i + 1) * 48_000 // FPS:
                    pcm = 0.1 * np.sin(2 * np.pi * 440 * (apts + np.arange(960)) / 48_000)
                    af = av.AudioFrame.from_ndarray(pcm.astype(np.float32)[None], format="flt", layout="mono")
                    af.sample_rate, af.pts, af.time_base = 48_000, apts, Fraction(1, 48_000)
                    out.mux(a.encode(af))
                    apts += 960
            out.mux(v.encode(None))
            out.mux(a.encode(None))
    done.write_text(f"{minutes} min generated in {time.perf_counter() - t0:.0f} s\n")
    return sorted(directory.glob("*.webm"))


def baseline(segments: list[Path], out_path: Path, preset: str, crf: int) -> float:
    """Decode + encode with the export's encoder settings, Opus copied; returns seconds of video."""
    with av.open(str(out_path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.codec_context.time_base = Fraction(1, 90_000)
        vs.options = {"preset": preset, "crf": str(crf), "g": str(2 * FPS), "keyint_min": str(FPS)}
        aus = None
        last = 0.0
        last_audio = Fraction(-1)
        for path in segments:
            with av.open(str(path)) as c:
                v, a = c.streams.video[0], c.streams.audio[0]
                v.thread_type = "AUTO"
                if aus is None:
                    aus = out.add_stream_from_template(a)
                for pkt in c.demux(v, a):
                    if pkt.stream.type == "audio":
                        if pkt.pts is not None and pkt.pts * pkt.time_base > last_audio:
                            last_audio = pkt.pts * pkt.time_base
                            pkt.stream = aus
                            out.mux(pkt)
                        continue
                    for frame in pkt.decode():
                        assert isinstance(frame, av.VideoFrame)
                        assert frame.pts is not None and frame.time_base is not None
                        t = float(frame.pts * frame.time_base)
                        frame.pts, frame.time_base = round(t * 90_000), Fraction(1, 90_000)
                        frame.pict_type = av.video.frame.PictureType.NONE
                        out.mux(vs.encode(frame))
                        last = t
        out.mux(vs.encode(None))
    return last + 1 / FPS


def timed(fn: Callable[[], float]) -> dict[str, Any]:
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    seconds = fn()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    return {"video_s": round(seconds, 2), "wall_s": round(wall, 2), "realtime_x": round(seconds / wall, 2),
            "cpu_s": round(cpu, 1), "cpu_s_per_video_s": round(cpu / seconds, 3),
            "loadavg_after": [round(x, 2) for x in os.getloadavg()]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    src = Path(args.cache) if args.cache else REPO / "bench" / "results" / f"export-src-{args.minutes:g}m"
    t0 = time.perf_counter()
    segments = make_source(src, args.minutes)
    made = time.perf_counter() - t0
    work = src / "out"
    work.mkdir(exist_ok=True)
    spec = WatermarkSpec("张三", dt.datetime.now(dt.timezone.utc), recipient_id="P-17",
                         recorded_from=dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.timezone.utc))
    config = RedactionConfig(detect_every=args.detect_every, detect_width=args.detect_width)
    runs = []
    for n in range(args.repeats):
        base = timed(lambda: baseline(segments, work / "baseline.mp4", args.preset, args.crf))
        result: dict[str, Any] = {}

        def export(result: dict[str, Any] = result) -> float:
            r = export_recording(segments, work / "export.mp4", watermark=spec, redaction=config,
                                 preset=args.preset, crf=args.crf)
            result.update(frames=r.frames, bytes=r.bytes, redaction_records=len(r.redactions),
                          stage_s=r.timings)
            return r.duration_s

        exp = timed(export)
        exp.update(result)
        exp["ratio_to_baseline_wall"] = round(exp["wall_s"] / base["wall_s"], 2)
        print(f"repeat {n}: baseline {base['realtime_x']}x, export {exp['realtime_x']}x real time", flush=True)
        runs.append({"baseline": base, "export": exp})
    med = {k: statistics.median(r[k]["realtime_x"] for r in runs) for k in ("baseline", "export")}
    return {
        "minutes": args.minutes, "size": f"{W}x{H}", "fps": FPS, "segments": len(segments),
        "source_cached": str(src.relative_to(REPO)) if src.is_relative_to(REPO) else str(src),
        "source_made_s": round(made, 1), "cpu_count": os.cpu_count(),
        "preset": args.preset, "crf": args.crf, "detect_every": args.detect_every,
        "detect_width": args.detect_width, "runs": runs,
        "median_realtime_x": med, "target_realtime_x": 2.0,
        "pass": med["export"] >= 2.0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--preset", default="ultrafast")
    p.add_argument("--crf", type=int, default=23)
    p.add_argument("--detect-every", type=int, default=5)
    p.add_argument("--detect-width", type=int, default=320)
    p.add_argument("--cache", default="", help="source directory (default bench/results/export-src-<m>m)")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "export.json"))
    args = p.parse_args()
    load = [round(x, 2) for x in os.getloadavg()]
    result = run(args)
    result["loadavg_start"] = load
    write_result(args.out, result)


if __name__ == "__main__":
    main()

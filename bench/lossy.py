"""The lossy 4G run of ``tests/media/test_lossy.py``, repeated, with its figures per run and as
medians: what a viewer and the recording get through 5% loss and 80 ± 40 ms each way.

    sudo python -m bench.lossy [--runs 10] [--engine packets] [--shares 0.5,1.0]

Needs what the test needs (root, ``ip``, ``/dev/net/tun``). Each run is the test's scenario: a
publisher and a WHEP viewer behind the user-space wire, a real ``dispatch-server``, a clean 8 s
stretch, a keyframe dropped towards the server and one towards the viewer, then the publisher
goes quiet and ends. ``--shares`` runs the packet engine with each ``[media] viewer_rtx_share``
in turn, round after round (the same-run baseline for the retransmission budget). Per run:

- frames on time (≤ 1 s after sending) in the clean stretch after the viewer's first second;
- the viewer's longest freeze (no frame) in the clean stretch, and in the whole run;
- each dropped keyframe: its next decodable frame at the viewer, from sending;
- recorded video frames, share of those sent from the first recorded one;
- retransmissions per forwarded packet to the viewer, and NACKs suppressed over its budget;
- keyframe requests the server repeated because none had come ("no keyframe since").
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import statistics
import tempfile
from pathlib import Path

from tests.media import test_lossy as lossy
from tests.support.lossy_peer import match


def figures(o: lossy.Outcome) -> dict[str, float]:
    start, end = max(o.first_frame_at + lossy.WARMUP_S, o.loss_from), o.clean_until
    window = [n for n, s in enumerate(o.sent) if start <= s.at < end]
    arrived = {g.n: g for g in o.got if g.n is not None}
    on_time = [n for n in window if n in arrived and arrived[n].at - o.sent[n].at <= lossy.DEADLINE_S]
    clean = sorted(g.at for g in o.got if start <= g.at < end)
    every = sorted(g.at for g in o.got)
    out: dict[str, float] = {
        "on_time_pct": 100 * len(on_time) / len(window),
        "freeze_clean_s": max((b - a for a, b in itertools.pairwise(clean)), default=0.0),
        "freeze_run_s": max((b - a for a, b in itertools.pairwise(every)), default=0.0),
    }
    for d in o.drops:
        shown = [g.at for g in o.got if g.n is not None and g.n >= d.keyframe and g.decodable]
        out[f"keyframe_{d.direction}_s"] = (min(shown) if shown else float("inf")) - o.sent[d.keyframe].at
    _, recorded = lossy._recorded_video(o)
    frames = match(o.sent, recorded)
    first = next((f.n for f in frames if f.n is not None), 0)
    out["recorded_pct"] = 100 * len(frames) / (len(o.sent) - first)
    log = "\n".join(o.server_log)
    viewer = re.search(r"video: (\d+) packets, (\d+) retransmitted, \d+ NACKs suppressed \(\d+ repeated, (\d+) over",
                       log)
    if viewer:
        out["rtx_per_packet"] = int(viewer[2]) / max(1, int(viewer[1]))
        out["over_budget"] = float(viewer[3])
    out["keyframe_rerequests"] = float(log.count("no keyframe since the last request"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lossy")
    parser.add_argument("--runs", type=int, default=10, help="runs (rounds, with --shares)")
    parser.add_argument("--engine", choices=lossy.ENGINES, default="packets")
    parser.add_argument("--shares", default="", help="comma-separated [media] viewer_rtx_share values, in turn")
    args = parser.parse_args()
    variants: list[tuple[str, dict[str, str]]] = [("", {})]
    if args.shares:
        variants = [(f"share {v}", {"DISPATCH_MEDIA__VIEWER_RTX_SHARE": v}) for v in args.shares.split(",")]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in variants}
    for run in range(args.runs):
        for name, env in variants:
            with tempfile.TemporaryDirectory(prefix="bench-lossy-") as tmp:
                outcome = asyncio.run(lossy._scenario(Path(tmp), args.engine, env))
                row = figures(outcome)
            results[name].append(row)
            print(f"run {run} {args.engine} {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
    for name, rows in results.items():
        print(f"\n{args.engine} {name} ({len(rows)} runs): median (min-max)")
        for key in rows[0]:
            values = [r[key] for r in rows if key in r]
            print(f"  {key:22} {statistics.median(values):8.2f} ({min(values):.2f}-{max(values):.2f})")


if __name__ == "__main__":
    main()

"""Where the packet engine's CPU and memory go: one server under a steady load, measured and profiled.

    python -m bench.profile_engine [--units 8] [--engine packets] [--recording] [--window 10]
                                   [--py-spy OUT.txt] [--perf OUT.txt] [--tracemalloc OUT.txt]

Starts ``dispatch_server serve`` pinned to the first core and two ``bench.loadgen`` processes on the
others (the load of :mod:`bench.relay`: pre-encoded VP8 640x480@30 ~1 Mbit/s + Opus, 2 viewers per
unit), measures an idle window, adds ``--units`` units, waits a warm-up, and measures one window:
the server's CPU (% of one core, whole process tree) and RSS, per unit. Then, optionally:

- ``--py-spy OUT``: ``py-spy record --native --format raw`` on the server for ``--window`` seconds
  (collapsed stacks, one per line; ``py-spy`` must be installed in this environment);
- ``--perf OUT``: ``perf record -g`` then ``perf report --no-children`` (self time per symbol);
- ``--tracemalloc OUT``: the server runs under :func:`serve_traced` (tracemalloc on, 8 frames; a
  SIGUSR2 writes a snapshot); snapshots at idle and with the units running, and the top
  differences per unit, by line and by traceback, are written to OUT.

A tool for finding costs, not a benchmark: no Janus, one round, no delivery judgement beyond the
viewers' median fps printed with the window.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.relay import CLK_TCK, PYTHON, Bench, Plan, ServerChild, measure
from bench.side_by_side import Pinning
from tests.support.server import write_config

# A thread waiting (for a lock, the GIL, a condition or I/O), not working.
IDLE_MARKS = ("PyThread_acquire_lock_timed", "epoll_pwait", "epoll_wait", "pthread_cond_timedwait",
              "pthread_cond_wait", "sem_wait", "sem_timedwait")


def collapsed_summary(raw: Path, top: int = 70) -> str:
    """Self and inclusive sample shares per frame from py-spy's collapsed stacks, waiting threads
    left out (py-spy's idle detection does not see them with ``--native``)."""
    self_counts: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        if any(mark in stack for mark in IDLE_MARKS):
            continue
        total += count
        frames = stack.split(";")
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count
    out = [f"{total} samples", "", "self:"]
    for name, c in sorted(self_counts.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"{100 * c / total:6.2f}%  {name}")
    out += ["", "inclusive:"]
    for name, c in sorted(incl.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"{100 * c / total:6.2f}%  {name}")
    return "\n".join(out) + "\n"


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of the main thread (the event loop) and of all other threads (Python 3.11 does
    not name OS threads, so they cannot be told apart here)."""
    out = {"loop": 0.0, "other threads": 0.0}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        out["loop" if int(tid) == pid else "other threads"] += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=8)
    parser.add_argument("--engine", default="packets")
    parser.add_argument("--recording", action="store_true")
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--py-spy", dest="py_spy")
    parser.add_argument("--perf")
    parser.add_argument("--tracemalloc")
    parser.add_argument("--logs", help="keep the server's and load generators' logs in this folder")
    parser.add_argument("--code", help="run the server from this checkout instead (an A/B against another commit: "
                                       "git worktree add --detach DIR COMMIT)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the server (e.g. DISPATCH_SERVER__MALLOC_ARENA_MAX=0)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve-traced"]:
        return serve_traced(Path(argv[1]), argv[2:])
    args = parser.parse_args(argv)
    plan = Plan(rounds=1, cpu_units=(args.units,), warmup_s=args.warmup, window_s=args.window, idle_s=3.0,
                ramp=(), ramp_warmup_s=0, ramp_window_s=0, late_trials=0)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        work = Path(tmp)
        logs = Path(args.logs) if args.logs else work / "logs"
        bench = Bench(plan, work, logs, args.units, labels=("forward",), pinning=Pinning.plan())
        extra = (f'[archive]\nenabled = {"true" if args.recording else "false"}\n'
                 f'[media]\nengine = "{args.engine}"\n')
        bench.write_configs = lambda: setattr(  # type: ignore[method-assign]
            bench, "config", write_config(work / "config.toml", work / "data", extra))
        if args.tracemalloc:
            wrap = ["-m", "bench.profile_engine", "--serve-traced", str(work)]
        elif args.code:
            wrap = ["-c", f"import sys; sys.path.insert(0, {args.code!r}); from dispatch_server.cli import main; "
                    "sys.exit(main())"]
        else:
            wrap = ["-m", "dispatch_server"]
        server_env = dict(item.split("=", 1) for item in args.env)
        bench.server_child = lambda name, argv: ServerChild(  # type: ignore[method-assign]
            name, argv, bench.logs / f"{name}-server.log", bench.pinning.server if bench.pinning else None,
            env=server_env)
        bench.server_argv = lambda: {  # type: ignore[method-assign]
            "forward": [PYTHON, *wrap, "--config", str(bench.config), "serve"]}
        try:
            bench.setup()
            server = bench.forward
            lg = bench.loadgens
            idle = measure(server, lg, plan.idle_s)
            snapshots = []
            if args.tracemalloc:
                snapshots.append(_snapshot(server.pid, work))
            units = [f"p{k:03d}" for k in range(args.units)]
            bench.register_units(units)
            added = bench._add(server, units, lg)
            if added["failed"]:
                raise RuntimeError(f"could not connect {added['failed']}: {added['errors']}")
            time.sleep(plan.warmup_s)
            threads0, t0 = thread_cpu(server.pid), time.monotonic()
            win = measure(server, lg, plan.window_s)
            threads1, t1 = thread_cpu(server.pid), time.monotonic()
            per_unit = (win.server_cpu_pct - idle.server_cpu_pct) / args.units
            print(f"{args.units} units, engine {args.engine}, recording {'on' if args.recording else 'off'}: "
                  f"server {win.server_cpu_pct:.1f}% (idle {idle.server_cpu_pct:.1f}%) -> {per_unit:.2f}%/unit; "
                  f"RSS {win.server_rss_mb:.0f} MB (idle {idle.server_rss_mb:.0f}) -> "
                  f"{(win.server_rss_mb - idle.server_rss_mb) / args.units:.2f} MB/unit; loadgens "
                  f"{'+'.join(f'{c:.0f}' for c in win.loadgen_cpu_pct)}%, others {win.others_cpu_pct:.0f}%; "
                  f"viewers {win.viewer_fps_median:.1f} fps, on time min {win.delivered_min}, "
                  f"audio min {win.audio_received_min}", flush=True)
            per_thread = {k: 100 * (v - threads0.get(k, 0.0)) / (t1 - t0) for k, v in threads1.items()}
            print("threads: " + ", ".join(f"{k} {v:.1f}%" for k, v in sorted(per_thread.items(), key=lambda kv: -kv[1])
                                          if v >= 0.05), flush=True)
            if args.py_spy:
                raw = Path(args.py_spy).with_suffix(".raw")
                subprocess.run([str(Path(PYTHON).parent / "py-spy"), "record", "--native", "--format", "raw",
                                "--rate", "250", "-d", str(int(args.window)), "-o", str(raw), "--pid",
                                str(server.pid)], check=True, stdout=subprocess.DEVNULL)
                Path(args.py_spy).write_text(collapsed_summary(raw), encoding="utf-8")
            if args.perf:
                data = work / "perf.data"
                subprocess.run([shutil.which("perf") or "/usr/bin/perf", "record", "-g", "-o", str(data), "-p",
                                str(server.pid), "--", "sleep", str(args.window)], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                with open(args.perf, "w", encoding="utf-8") as f:
                    subprocess.run([shutil.which("perf") or "/usr/bin/perf", "report", "-i", str(data),
                                    "--no-children", "--stdio", "--sort", "dso,sym", "-g", "none"],
                                   check=True, stdout=f, stderr=subprocess.DEVNULL)
            if args.tracemalloc:
                snapshots.append(_snapshot(server.pid, work))
                _write_tracemalloc(snapshots, Path(args.tracemalloc), args.units)
            bench._servers_alive()
        finally:
            bench.close()
    return 0


def serve_traced(folder: Path, server_args: list[str]) -> int:
    """``dispatch_server`` with tracemalloc on; SIGUSR2 writes ``folder/tracemalloc.<n>.pickle``."""
    import signal
    import tracemalloc

    from dispatch_server.cli import main as serve

    tracemalloc.start(8)
    taken = [0]

    def dump(signum: int, frame: object) -> None:
        taken[0] += 1
        tmp = folder / f"snapshot.{taken[0]}.tmp"
        tracemalloc.take_snapshot().dump(str(tmp))
        tmp.rename(folder / f"tracemalloc.{taken[0]}.pickle")

    signal.signal(signal.SIGUSR2, dump)
    return serve(server_args)


def _snapshot(pid: int, work: Path) -> Path:
    import signal

    before = set(work.glob("tracemalloc.*.pickle"))
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = set(work.glob("tracemalloc.*.pickle")) - before
        if new:
            return new.pop()  # renamed into place once written
        time.sleep(0.2)
    raise RuntimeError("the server wrote no tracemalloc snapshot (is dispatch_server's SIGUSR2 hook there?)")


def _write_tracemalloc(paths: list[Path], out: Path, units: int) -> None:
    import tracemalloc

    idle, busy = (tracemalloc.Snapshot.load(str(p)) for p in paths)
    lines = [f"tracemalloc: busy ({units} units) minus idle, by line, top 40", ""]
    for stat in busy.compare_to(idle, "lineno")[:40]:
        lines.append(f"{stat.size_diff / 1e6 / units:8.3f} MB/unit {stat.count_diff / units:9.1f} blocks/unit  "
                     f"{stat.traceback}")
    lines += ["", "by traceback (5 frames), top 25", ""]
    for stat in busy.compare_to(idle, "traceback")[:25]:
        lines.append(f"{stat.size_diff / 1e6 / units:8.3f} MB/unit")
        lines += [f"    {frame}" for frame in stat.traceback.format()[-10:]]
    total = sum(s.size_diff for s in busy.compare_to(idle, "filename"))
    lines.insert(1, f"total traced difference {total / 1e6 / units:.3f} MB/unit")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())

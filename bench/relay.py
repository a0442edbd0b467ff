"""Live-path benchmark: the forwarding relay against aiortc's ``MediaRelay``, on this machine, in one run.

    python -m bench.relay [--quick] [--max-units 60] [--out bench/results/relay.json]

Three measurements (see docs/benchmarks.md for the method and the latest figures):

1. **Server CPU per unit** (1 publisher, 2 viewers): ``dispatch_server`` (forwards encoded frames)
   and ``bench.baseline_server`` (``MediaRelay``: decode once, encode per viewer), alternating in
   rounds. Each round measures the server idle, then with 1 and with 4 units; per unit =
   (CPU with N units - idle CPU) / N, in % of one core, from ``/proc/<pid>/stat`` over a
   steady-state window after a warm-up. Medians over rounds and their ratio are reported.
2. **Largest number of units** the forwarding server carries: units are added in steps (10, 20, ...)
   until a viewer receives fewer than 99% of the frames its publisher sent during the window, a
   publisher cannot keep 30 fps (the load generator, not the server, is then the limit), or
   ``--max-units`` is reached.
3. **First frame for a late viewer**: viewers join a running publisher one at a time (during the
   first ramp step); seconds from the WHEP answer to their first frame, p50 and p95.

Load comes from ``bench.loadgen`` subprocesses that replay pre-encoded VP8 and count encoded frames,
so they neither encode nor decode. Their CPU and the machine's (including steal time) are reported
next to the server's, because on 2 cores they compete. Everything listens on 127.0.0.1 and every
child process is killed on exit, on error and (through PR_SET_PDEATHSIG) if this process dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime as dt
import json
import math
import os
import platform
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from tests.support.server import REPO, add_unit, add_user, login, write_config

PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
FPS = 30
DELIVERY_TARGET = 0.99
MIN_SEND_FPS = 0.97 * FPS  # below this the load generator, not the server, is the limit
PERSON, PASSWORD = "bench", "pw-12345678"

TARGET_CPU_RATIO = 8.0
TARGET_UNITS = 40
TARGET_LATE_P95_S = 1.0


@dataclass(frozen=True)
class Plan:
    rounds: int
    cpu_units: tuple[int, ...]
    warmup_s: float
    window_s: float
    idle_s: float
    ramp: tuple[int, ...]
    ramp_warmup_s: float
    ramp_window_s: float
    late_trials: int
    loadgens: int = 2
    deadline_s: float = 900.0  # the whole run is abandoned (and reported as such) past this

    @classmethod
    def make(cls, quick: bool, max_units: int) -> "Plan":
        if quick:
            return cls(1, (1, 4), 2.0, 5.0, 3.0, _steps(min(max_units, 20)), 3.0, 6.0, 8)
        return cls(3, (1, 4), 3.0, 8.0, 4.0, _steps(max_units), 5.0, 10.0, 20)


def _steps(max_units: int) -> tuple[int, ...]:
    steps = list(range(10, max_units + 1, 10))
    if not steps or steps[-1] != max_units:
        steps.append(max_units)
    return tuple(s for s in steps if s > 0)


# --- processes -----------------------------------------------------------------------------

# Resolved here, not in the forked child: loading a library after fork() may deadlock.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel SIGKILLs it when this process dies."""
    _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")}


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads included."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def machine_jiffies() -> tuple[int, int, int]:
    """(busy, steal, total) jiffies over all cores, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    total = sum(values)
    idle = values[3] + values[4]
    return total - idle - values[7], values[7], total


class ServerChild:
    """A server subprocess that prints ``... listening on URL`` once it accepts requests."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.argv = argv
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.log: deque[str] = deque(maxlen=300)

    def start(self, timeout: float = 60.0) -> "ServerChild":
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, cwd=REPO, env=_env(), preexec_fn=_die_with_parent,
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.log.append(line.rstrip("\n"))
                if "listening on " in line and not self.url:
                    self.url = line.split("listening on ", 1)[1].strip()
                    ready.set()
            ready.set()

        threading.Thread(target=pump, name=f"{self.name}-log", daemon=True).start()
        if not ready.wait(timeout) or not self.url:
            self.stop()
            raise RuntimeError(f"{self.name} did not start:\n" + "\n".join(self.log))
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        _terminate(self.proc)


def _terminate(proc: subprocess.Popen[str] | None, grace_s: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class LoadgenChild:
    """A ``bench.loadgen`` subprocess: one JSON command per line in, one JSON answer per line out."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._log_file: Any = None
        self.bitrate = 0

    def start(self) -> "LoadgenChild":
        self._log_file = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "bench.loadgen"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log_file, text=True, cwd=REPO, env=_env(), preexec_fn=_die_with_parent,
        )

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self._lines.put(line)
            self._lines.put(None)

        threading.Thread(target=pump, name=f"{self.name}-out", daemon=True).start()
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        self.bitrate = int(self.receive(timeout)["bitrate"])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.name}: no answer within {timeout:g} s; see {self.log_path}") from None
        if line is None:
            raise RuntimeError(f"{self.name} exited; see {self.log_path}:\n{self._tail()}")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok", False) and "error" in answer:
            raise RuntimeError(f"{self.name}: {answer['error']}")
        return answer

    def request(self, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.send(cmd)
        return self.receive(timeout)

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(encoding="utf-8").splitlines()[-30:])
        return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.request({"cmd": "stop"}, timeout=30)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        _terminate(self.proc)
        if self._log_file is not None:
            self._log_file.close()


def _all(loadgens: list[LoadgenChild], cmds: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    for lg, cmd in zip(loadgens, cmds):
        lg.send(cmd)
    return [lg.receive(timeout) for lg in loadgens]


# --- one measurement window ------------------------------------------------------------------

@dataclass
class Window:
    """What happened during one steady-state window."""

    units: int
    seconds: float
    server_cpu_pct: float  # % of one core
    loadgen_cpu_pct: list[float]
    machine_busy_pct: float  # % of all cores, steal excluded
    machine_steal_pct: float
    publisher_fps_min: float = 0.0
    publisher_fps_median: float = 0.0
    viewer_fps_median: float = 0.0
    delivered_min: float = 0.0  # lowest (frames received by a viewer) / (frames its publisher sent)
    delivered_median: float = 0.0
    viewers_below_target: int = 0
    max_gap_s: float = 0.0  # longest pause between two frames at any viewer


def measure(server: ServerChild, loadgens: list[LoadgenChild], seconds: float) -> Window:
    """Counters and CPU at two marks ``seconds`` apart; the loadgens count on their own clock."""
    def sample() -> tuple[float, float, list[float], tuple[int, int, int]]:
        return (time.monotonic(), process_cpu_s(server.pid), [process_cpu_s(lg.pid) for lg in loadgens],
                machine_jiffies())

    for lg in loadgens:
        lg.send({"cmd": "mark"})
    t0, s0, l0, m0 = sample()
    first = [lg.receive(30) for lg in loadgens]
    time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
    for lg in loadgens:
        lg.send({"cmd": "mark"})
    t1, s1, l1, m1 = sample()
    second = [lg.receive(30) for lg in loadgens]
    wall = t1 - t0
    busy, steal, total = (b - a for a, b in zip(m0, m1))
    ncpu = os.cpu_count() or 1
    win = Window(
        units=sum(len(m["sent"]) for m in second),
        seconds=round(wall, 3),
        server_cpu_pct=round(100 * (s1 - s0) / wall, 2),
        loadgen_cpu_pct=[round(100 * (b - a) / wall, 2) for a, b in zip(l0, l1)],
        machine_busy_pct=round(100 * ncpu * (busy - steal) / max(total, 1), 1),
        machine_steal_pct=round(100 * ncpu * steal / max(total, 1), 1),
    )
    pub_fps: list[float] = []
    view_fps: list[float] = []
    ratios: list[float] = []
    gaps: list[float] = [0.0]
    for a, b in zip(first, second):
        span = b["t"] - a["t"]
        for unit, sent in b["sent"].items():
            sent_d = sent - a["sent"].get(unit, 0)
            pub_fps.append(sent_d / span)
            for k, got in enumerate(b["received"][unit]):
                got_d = got - (a["received"].get(unit) or [0] * (k + 1))[k]
                view_fps.append(got_d / span)
                ratios.append(got_d / sent_d if sent_d else 0.0)
            gaps.extend(b["max_gap_s"][unit])
    if ratios:
        win.publisher_fps_min = round(min(pub_fps), 2)
        win.publisher_fps_median = round(statistics.median(pub_fps), 2)
        win.viewer_fps_median = round(statistics.median(view_fps), 2)
        win.delivered_min = round(min(ratios), 4)
        win.delivered_median = round(statistics.median(ratios), 4)
        win.viewers_below_target = sum(r < DELIVERY_TARGET for r in ratios)
        win.max_gap_s = round(max(gaps), 3)
    return win


# --- the benchmark ---------------------------------------------------------------------------

@dataclass
class Bench:
    plan: Plan
    work: Path
    max_units: int
    forward: ServerChild | None = None
    baseline: ServerChild | None = None
    loadgens: list[LoadgenChild] = field(default_factory=list)
    unit_tokens: dict[str, str] = field(default_factory=dict)
    person_token: str = ""
    started: float = field(default_factory=time.monotonic)
    notes: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {text}", flush=True)

    def check_deadline(self) -> None:
        if time.monotonic() - self.started > self.plan.deadline_s:
            raise TimeoutError(f"benchmark ran past its {self.plan.deadline_s:g} s deadline")

    # setup ---------------------------------------------------------------------------------
    def setup(self) -> None:
        config = write_config(self.work / "config.toml", self.work / "data")
        self.loadgens = [LoadgenChild(f"loadgen{k}", self.work / f"loadgen{k}.log").start()
                         for k in range(self.plan.loadgens)]
        ids = [f"u{k:03d}" for k in range(self.max_units)]
        self.say(f"registering {len(ids)} units and a person through the CLI")
        add_user(config, PERSON, "operator", PASSWORD)
        with ThreadPoolExecutor(4) as pool:
            self.unit_tokens = dict(zip(ids, pool.map(lambda u: add_unit(config, u), ids)))
        self.forward = ServerChild("dispatch-server", [
            PYTHON, "-m", "dispatch_server", "--config", str(config), "serve"]).start()
        self.baseline = ServerChild("baseline-server", [PYTHON, "-m", "bench.baseline_server"]).start()
        self.person_token = asyncio.run(login(self.forward.url, PERSON, PASSWORD))
        for lg in self.loadgens:
            lg.wait_ready()
        self.say(f"forward {self.forward.url}, baseline {self.baseline.url}, "
                 f"loop {self.loadgens[0].bitrate / 1000:.0f} kbit/s")

    def close(self) -> None:
        for lg in self.loadgens:
            with contextlib.suppress(Exception):
                lg.stop()
        for server in (self.forward, self.baseline):
            if server is not None:
                server.stop()

    def _servers_alive(self) -> None:
        for server in (self.forward, self.baseline):
            if server is not None and not server.alive():
                raise RuntimeError(f"{server.name} exited:\n" + "\n".join(list(server.log)[-40:]))

    def _add(self, server: ServerChild, units: list[str], loadgens: list[LoadgenChild]) -> dict[str, Any]:
        tokens = {u: self.unit_tokens.get(u, "baseline") for u in units}
        cmds = [{"cmd": "add", "base": server.url, "person_token": self.person_token, "viewers": 2,
                 "units": [[u, tokens[u]] for u in units[k::len(loadgens)]]} for k in range(len(loadgens))]
        answers = _all(loadgens, cmds, timeout=60 + 5 * len(units))
        return {"connect_s": max(a["connect_s"] for a in answers),
                "failed": [f for a in answers for f in a["failed"]]}

    # 1. CPU per unit -----------------------------------------------------------------------
    def cpu_rounds(self) -> list[dict[str, Any]]:
        assert self.forward is not None and self.baseline is not None
        lg = self.loadgens[:1]
        rounds = []
        for r in range(self.plan.rounds):
            order = [("forward", self.forward), ("baseline", self.baseline)]
            if r % 2:
                order.reverse()
            for label, server in order:
                self.check_deadline()
                lg[0].request({"cmd": "clear"}, timeout=60)
                time.sleep(1.0)
                idle = measure(server, lg, self.plan.idle_s)
                entry: dict[str, Any] = {"round": r + 1, "server": label, "idle_cpu_pct": idle.server_cpu_pct,
                                         "steps": []}
                units: list[str] = []
                for n in self.plan.cpu_units:
                    more = [f"u{k:03d}" for k in range(len(units), n)]
                    added = self._add(server, more, lg)
                    units += more
                    if added["failed"]:
                        raise RuntimeError(f"{label}: could not connect {added['failed']}")
                    time.sleep(self.plan.warmup_s)
                    win = measure(server, lg, self.plan.window_s)
                    per_unit = (win.server_cpu_pct - idle.server_cpu_pct) / n
                    entry["steps"].append({**asdict(win), "per_unit_cpu_pct": round(per_unit, 2)})
                    self.say(f"round {r + 1} {label:8s} {n} unit(s): server {win.server_cpu_pct:5.1f}% "
                             f"(idle {idle.server_cpu_pct:.1f}%) -> {per_unit:5.2f}%/unit; loadgen "
                             f"{win.loadgen_cpu_pct[0]:.0f}%, machine {win.machine_busy_pct:.0f}% "
                             f"+ steal {win.machine_steal_pct:.0f}%, viewers {win.viewer_fps_median:.1f} fps")
                    self._servers_alive()
                rounds.append(entry)
        lg[0].request({"cmd": "clear"}, timeout=60)
        return rounds

    # 2 and 3. ramp on the forwarding server, late viewers at the first step ----------------
    def ramp(self) -> tuple[list[dict[str, Any]], str, dict[str, Any]]:
        assert self.forward is not None
        steps: list[dict[str, Any]] = []
        late: dict[str, Any] = {}
        stop_reason = f"reached --max-units {self.max_units}"
        running: list[str] = []
        time.sleep(1.0)
        for target in self.plan.ramp:
            self.check_deadline()
            more = [f"u{k:03d}" for k in range(len(running), target)]
            added = self._add(self.forward, more, self.loadgens)
            running += more
            time.sleep(self.plan.ramp_warmup_s)
            win = measure(self.forward, self.loadgens, self.plan.ramp_window_s)
            step = {**asdict(win), "connect_s": added["connect_s"], "connect_failures": added["failed"]}
            reasons = []
            if added["failed"]:
                reasons.append(f"{len(added['failed'])} unit(s) failed to connect")
            if win.viewers_below_target:
                reasons.append(f"{win.viewers_below_target} viewer(s) below {DELIVERY_TARGET:.0%} of frames "
                               f"(lowest {win.delivered_min:.1%})")
            loadgen_limited = win.publisher_fps_min < MIN_SEND_FPS
            if loadgen_limited:
                reasons.append(f"a publisher sent only {win.publisher_fps_min:.1f} fps: the load generator "
                               "could not keep up")
            step["passed"] = not reasons
            step["loadgen_limited"] = loadgen_limited
            step["reasons"] = reasons
            steps.append(step)
            self.say(f"ramp {target:3d} units: server {win.server_cpu_pct:5.1f}%, loadgens "
                     f"{'+'.join(f'{c:.0f}' for c in win.loadgen_cpu_pct)}%, machine {win.machine_busy_pct:.0f}% "
                     f"+ steal {win.machine_steal_pct:.0f}%, pub {win.publisher_fps_median:.1f} fps, delivered "
                     f"min {win.delivered_min:.2%}, max gap {win.max_gap_s:.2f} s -> "
                     f"{'pass' if not reasons else 'FAIL: ' + '; '.join(reasons)}")
            self._servers_alive()
            if not late:
                late = self.late_viewers(target)
            if reasons:
                stop_reason = f"{target} units: " + "; ".join(reasons)
                break
        return steps, stop_reason, late

    def late_viewers(self, running_units: int) -> dict[str, Any]:
        assert self.forward is not None
        answer = self.loadgens[0].request({
            "cmd": "late", "base": self.forward.url, "person_token": self.person_token, "unit": "u000",
            "trials": self.plan.late_trials, "timeout_s": 5.0,
        }, timeout=30 + 8 * self.plan.late_trials)
        trials = answer["trials"]
        ok = [t for t in trials if "error" not in t]
        result: dict[str, Any] = {"trials": len(trials), "failed": len(trials) - len(ok),
                                  "background_units": running_units, "samples": trials}
        if ok:
            from_answer = sorted(t["from_answer_s"] for t in ok)
            from_post = sorted(t["from_post_s"] for t in ok)
            result.update(
                p50_s=round(statistics.median(from_answer), 3), p95_s=round(_p95(from_answer), 3),
                max_s=round(from_answer[-1], 3), p50_from_post_s=round(statistics.median(from_post), 3),
                p95_from_post_s=round(_p95(from_post), 3), all_keyframes=all(t["keyframe"] for t in ok),
            )
            # A trial that timed out counts as infinitely late.
            if result["failed"]:
                result["p95_s"] = round(_p95(from_answer + [math.inf] * result["failed"]), 3)
        self.say(f"late viewer (with {running_units} units running): p50 {result.get('p50_s')} s, "
                 f"p95 {result.get('p95_s')} s, failed {result['failed']}/{len(trials)}")
        return result


def _p95(sorted_values: list[float]) -> float:
    """Nearest-rank 95th percentile (the 19th of 20 samples)."""
    values = sorted(sorted_values)
    return values[max(0, math.ceil(0.95 * len(values)) - 1)]


def summarize(rounds: list[dict[str, Any]], plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in plan.cpu_units:
        per: dict[str, list[float]] = {"forward": [], "baseline": []}
        total: dict[str, list[float]] = {"forward": [], "baseline": []}
        fps: dict[str, list[float]] = {"forward": [], "baseline": []}
        for entry in rounds:
            for step in entry["steps"]:
                if step["units"] == n:
                    per[entry["server"]].append(step["per_unit_cpu_pct"])
                    total[entry["server"]].append(step["server_cpu_pct"])
                    fps[entry["server"]].append(step["viewer_fps_median"])
        f, b = statistics.median(per["forward"]), statistics.median(per["baseline"])
        out[f"units_{n}"] = {
            "forward_per_unit_pct": round(f, 2), "baseline_per_unit_pct": round(b, 2),
            "forward_per_unit_rounds": per["forward"], "baseline_per_unit_rounds": per["baseline"],
            "forward_total_pct_median": round(statistics.median(total["forward"]), 2),
            "baseline_total_pct_median": round(statistics.median(total["baseline"]), 2),
            "forward_viewer_fps_median": round(statistics.median(fps["forward"]), 2),
            "baseline_viewer_fps_median": round(statistics.median(fps["baseline"]), 2),
            "ratio": round(b / f, 1) if f > 0 else None,
            # Ratio of each round's own pair, so machine noise that hits one round hits both servers.
            "ratio_rounds": [round(bb / ff, 1) if ff > 0 else None for ff, bb in zip(per["forward"], per["baseline"])],
        }
    idle: dict[str, list[float]] = {"forward": [], "baseline": []}
    for entry in rounds:
        idle[entry["server"]].append(entry["idle_cpu_pct"])
    out["idle_pct_median"] = {k: round(statistics.median(v), 2) for k, v in idle.items()}
    return out


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import aiortc
    import av

    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "python": platform.python_version(), "aiortc": aiortc.__version__, "av": av.__version__,
            "loadavg_at_start": Path("/proc/loadavg").read_text(encoding="ascii").split()[:3]}


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so ``finally`` blocks stop the children."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round, short windows, ramp to 20 units (~2 min)")
    parser.add_argument("--max-units", type=int, default=60, help="largest ramp step (default 60)")
    parser.add_argument("--out", default="bench/results/relay.json", help="JSON results (default %(default)s)")
    args = parser.parse_args(argv)
    if not 4 <= args.max_units <= 200:
        parser.error("--max-units must be within 4..200")
    plan = Plan.make(args.quick, args.max_units)
    command = "python -m bench.relay " + " ".join(argv if argv is not None else sys.argv[1:])
    result: dict[str, Any] = {
        "command": command.strip(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(), "plan": asdict(plan),
        "load": {"video": "VP8 640x480@30 pre-encoded loop (media.pattern.EncodedLoop), no audio",
                 "viewers_per_unit": 2, "delivery_target": DELIVERY_TARGET},
    }
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp, _signals_raise():
        bench = Bench(plan, Path(tmp), args.max_units)
        status = 0
        try:
            bench.setup()
            result["load"]["bitrate_kbps"] = round(bench.loadgens[0].bitrate / 1000)
            rounds = bench.cpu_rounds()
            result["cpu_rounds"] = rounds
            result["cpu"] = summarize(rounds, plan)
            steps, stop_reason, late = bench.ramp()
            passing = [s["units"] for s in steps if s["passed"]]
            result["ramp"] = {"steps": steps, "max_units_passing": max(passing, default=0),
                              "stop_reason": stop_reason}
            result["late_viewer"] = late
        except (Exception, KeyboardInterrupt) as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
            bench.say(f"benchmark failed: {result['error']}")
            status = 1
        finally:
            bench.close()
            result["elapsed_s"] = round(time.monotonic() - bench.started, 1)
    result["targets"] = verdicts(result, plan)
    out = Path(args.out)
    if not out.is_absolute():
        out = REPO / out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"targets": result["targets"], "elapsed_s": result["elapsed_s"]}, indent=2))
    print(f"results written to {out}")
    return status


def verdicts(result: dict[str, Any], plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cpu = result.get("cpu", {}).get(f"units_{max(plan.cpu_units)}")
    if cpu:
        out["cpu_ratio"] = {"target": f">= {TARGET_CPU_RATIO:g}x", "measured": cpu["ratio"],
                            "pass": cpu["ratio"] is not None and cpu["ratio"] >= TARGET_CPU_RATIO}
    ramp = result.get("ramp")
    if ramp:
        out["max_units"] = {"target": f">= {TARGET_UNITS}", "measured": ramp["max_units_passing"],
                            "pass": ramp["max_units_passing"] >= TARGET_UNITS, "stop_reason": ramp["stop_reason"]}
    late = result.get("late_viewer")
    if late and "p95_s" in late:
        out["late_first_frame_p95"] = {"target": f"< {TARGET_LATE_P95_S:g} s", "measured": late["p95_s"],
                                       "pass": late["p95_s"] < TARGET_LATE_P95_S}
    return out


if __name__ == "__main__":
    raise SystemExit(main())

"""Live-path benchmark: this server beside Janus's VideoRoom and aiortc's ``MediaRelay``, in one run.

    python -m bench.relay [--quick] [--rounds 3] [--engine packets|frames] [--workers N] [--recording]
                          [--janus-records]
                          [--without janus|mediarelay] [--ramp [--max-units 60]] [--out bench/results/relay.json]

Servers, each a subprocess on 127.0.0.1 pinned to the first usable core (the load generators get
the others; with one core both share it and the output says so):

- ``forward``: ``dispatch_server serve`` (the product) with media in its own process
  (``[media] workers = 0``), recording off unless ``--recording``; ``--engine`` sets
  ``DISPATCH_MEDIA__ENGINE`` when the server has that setting (else the output says "not
  available" and what it ran); ``--workers N`` adds ``forward-workers``, the same server with
  ``DISPATCH_MEDIA__WORKERS=N``, when it has that setting (issue #16 item 3; "not available"
  otherwise), and measures ``forward`` also at each worker's share of the units (e.g. 12 of 24),
  which each worker is compared with. Its CPU and memory are those of the whole process tree.
- ``janus``: Janus 1.1 (Debian ``janus``) with a generated configuration (:mod:`bench.janus_server`):
  the VideoRoom plugin over the HTTP API only, one room per unit (:mod:`bench.janus_client`).
  It records nothing unless ``--janus-records``: then each room records its publisher (VideoRoom
  ``record``: raw RTP packets to ``.mjr`` files, Janus's own recorder), which is the nearest Janus
  comes to ``--recording``. The issue's targets compare with Janus not recording.
- ``mediarelay``: :mod:`bench.baseline_server`, aiortc's ``MediaRelay`` (decode once, encode per
  viewer). It saturates its core at about 4 units, so it runs 1 and 4 units only (quick: 1).

A unit is one publisher of pre-encoded VP8 640x480@30 (~1 Mbit/s) and Opus (a 4 s loop of 20 ms
packets), with 2 viewers receiving both. Load comes from two ``bench.loadgen`` subprocesses that
replay the encoded media and count what arrives, so they neither encode nor decode.

Measurements, in rounds (3; quick: 1) that alternate the order of the servers:

1. Per server, in a fresh process (restarted for its turn in every round): an idle window, then
   1, 8 and 24 units (quick: 1 and 4), a warm-up and a window each. **CPU per unit** = (server
   CPU with N units - idle CPU) / N, % of one core, from ``/proc/<pid>/stat``. **RSS per unit**
   = (RSS at N - RSS idle) / N, MB, and the RSS at N. **Frames on time**: of the frames a
   publisher sent in the window (up to 1 s before its end), the share each viewer received within
   1 s of sending (frames matched one by one); lowest and median viewer. **Audio**: Opus packets
   received over sent per viewer, lowest and median. Medians over the rounds, and the forward
   server's ratios to Janus and to MediaRelay.
2. **Latency the server adds**, p95: every matched video frame's time from the publisher's
   ``RTCRtpSender`` taking it (send time) to the viewer's track handing it on (receive time), over
   all viewers in the window, 95th percentile; minus the same percentile of the **direct path**:
   one publisher connected straight to one viewer inside a load generator, no server, measured
   once before the rounds with nothing else running (aiortc's pacing, jitter buffer and the
   loopback network: ~35 ms here). Load-generator queueing at high unit counts therefore counts as
   server-added latency; the load generators' CPU is reported next to it.
3. **First frame for a late viewer**: while 6 units run, viewers join one running publisher one at
   a time (forward and Janus; not MediaRelay): seconds from the answer (WHEP 201, or Janus taking
   the subscriber's answer with ``start``) to the first keyframe, the first picture a decoder can
   show (this server starts every viewer at a keyframe; Janus forwards from wherever the stream
   is and asks the publisher for a keyframe); p50 and p95.
4. With ``--ramp``, afterwards, the forward server's unit ramp (4, 6, ..., 16, 20, 30, ...) until a
   step fails (a viewer below 99% on time, a unit not connecting, a publisher below 29.1 fps).

The CPU of the load generators, of everything else on the machine, steal time and UDP receive
drops are reported beside the server's, because on 2 cores they all compete. HTTP goes to
127.0.0.1; media flows between ICE host candidates on this machine's own addresses, so nothing
leaves the machine. Every child process is stopped on exit and on error, and is killed by the
kernel (PR_SET_PDEATHSIG) if this process dies. Janus missing: the run stops with the command that
installs it (``make bench`` installs it as a system dependency).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime as dt
import json
import math
import os
import platform
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import aiortc
import av

from bench import janus_server, side_by_side
from bench.loadgen import AUDIO_SPEC, CONNECT_ATTEMPTS
from bench.side_by_side import ForwardSetup, Pinning
from tests.support.server import REPO, add_unit, add_user, login, write_config

PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
FPS = 30
DELIVERY_TARGET = 0.99
MIN_SEND_FPS = 0.97 * FPS  # below this the load generator, not the server, is the limit
PERSON, PASSWORD = "bench", "pw-12345678"

SERVERS = ("forward", "baseline", "floor")  # floor: aiortc MediaRelay of encoded packets
SETTLE_S = 1.0
LATE_TIMEOUT_S = 5.0
LATE_BACKGROUND_UNITS = 6  # late viewers join once at least this many units run (and pass)

MEDIARELAY_UNITS = (1, 4)  # MediaRelay saturates its core at about 4 units: it is not run at more
MEDIARELAY_UNITS_QUICK = (1,)


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
    def side_by_side(cls, quick: bool, max_units: int, rounds: int | None = None) -> "Plan":
        """1, 8 and 24 units (quick: 1 and 4), warm-up and window per step, late viewers per server."""
        if quick:
            return cls(rounds or 1, (1, 4), 2.0, 5.0, 3.0, _steps(min(max_units, 8)), 3.0, 6.0, 8, deadline_s=900.0)
        return cls(rounds or 3, (1, 8, 24), 3.0, 8.0, 4.0, _steps(max_units), 5.0, 10.0, 20, deadline_s=2400.0)

    @classmethod
    def make(cls, quick: bool, max_units: int) -> "Plan":
        if quick:
            return cls(1, (1, 4), 2.0, 5.0, 3.0, _steps(min(max_units, 8)), 3.0, 6.0, 8)
        return cls(3, (1, 4), 3.0, 8.0, 4.0, _steps(max_units), 5.0, 10.0, 20)


def _steps(max_units: int) -> tuple[int, ...]:
    """Every 2 units from 4 to 16 (where this machine's limit has been), then 20, 30, 40, ..."""
    steps = [s for s in (4, 6, 8, 10, 12, 14, 16, 20, *range(30, max_units + 1, 10)) if s <= max_units]
    if not steps or steps[-1] != max_units:
        steps.append(max_units)
    return tuple(steps)


# --- processes -----------------------------------------------------------------------------

# Resolved here, not in the forked child: loading a library after fork() may deadlock.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel SIGKILLs it when this process dies."""
    _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)


def _child_setup(cores: frozenset[int] | None) -> Any:
    """What a child runs before exec: die with this process; with ``cores``, run only on them
    (inherited by its own children and threads)."""
    if cores is None:
        return _die_with_parent

    def setup() -> None:
        _die_with_parent()
        os.sched_setaffinity(0, cores)

    return setup


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")}, **(extra or {})}


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads included."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a server with worker processes is measured as a whole)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError), open(f"/proc/{p}/task/{task}/children", encoding="ascii") as f:
                    todo += [int(c) for c in f.read().split()]
    return out


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants, all threads."""
    total = 0.0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            total += process_cpu_s(p)
    return total


def worker_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds of each media worker process (``dispatch-server media-worker``) under ``pid``."""
    out: dict[int, float] = {}
    for p in process_tree(pid):
        with contextlib.suppress(OSError), open(f"/proc/{p}/cmdline", "rb") as f:
            if b"media-worker" in f.read().split(b"\0"):
                out[p] = process_cpu_s(p)
    return out


def units_by_worker(log_path: Path) -> dict[int, int]:
    """Units per media worker pid, from the front's log: where each unit's latest publish went."""
    where: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            m = re.search(r"unit (\S+): publishing session \w+ on media worker \d+ \(pid (\d+)\)", line)
            if m:
                where[m[1]] = int(m[2])
    counts: dict[int, int] = {}
    for pid in where.values():
        counts[pid] = counts.get(pid, 0) + 1
    return counts


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, MB (10^6 bytes)."""
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError), open(f"/proc/{p}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return round(total * 1024 / 1e6, 1)


def udp_drops(pid: int) -> int:
    """Datagrams the kernel dropped because a socket of ``pid`` had a full receive buffer.

    Sums the ``drops`` column of /proc/net/udp{,6} over the sockets among the process's open
    file descriptors (cumulative per socket; sockets closed in between are not counted).
    """
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[9] in inodes:
                    drops += int(cols[-1])
    return drops


def machine_jiffies() -> tuple[int, int, int]:
    """(busy without steal, steal, total) jiffies over all cores, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    total = sum(values)
    idle = values[3] + values[4]
    return total - idle - values[7], values[7], total


class ServerChild:
    """A server subprocess that prints ``... listening on URL`` once it accepts requests."""

    def __init__(self, name: str, argv: list[str], log_path: Path, cores: frozenset[int] | None = None,
                 env: dict[str, str] | None = None, ready_text: str = "", url: str = "") -> None:
        """``ready_text``/``url``: a server that does not print ``listening on URL`` (Janus) is
        ready at the first line containing ``ready_text`` and is reached at ``url``."""
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.cores = cores
        self.env = env or {}
        self.ready_text = ready_text
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.fixed_url = url
        self.stopped = False  # stopped on purpose: not a crash
        self.log: deque[str] = deque(maxlen=300)

    def start(self, timeout: float = 60.0) -> "ServerChild":
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, cwd=REPO, env=_env(self.env), preexec_fn=_child_setup(self.cores),
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            with open(self.log_path, "w", encoding="utf-8") as log:
                for line in self.proc.stdout:
                    log.write(line)
                    log.flush()
                    self.log.append(line.rstrip("\n"))
                    if self.ready_text and self.ready_text in line and not self.url:
                        self.url = self.fixed_url
                        ready.set()
                    elif not self.ready_text and "listening on " in line and not self.url:
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
        self.stopped = True
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

    def __init__(self, name: str, log_path: Path, cores: frozenset[int] | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self.cores = cores
        self.proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._log_file: Any = None
        self.bitrate = 0

    def start(self) -> "LoadgenChild":
        self._log_file = open(self.log_path, "w", encoding="utf-8")  # closed in stop()
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "bench.loadgen"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log_file, text=True, cwd=REPO, env=_env(), preexec_fn=_child_setup(self.cores),
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
    for lg, cmd in zip(loadgens, cmds, strict=True):
        lg.send(cmd)
    return [lg.receive(timeout) for lg in loadgens]


def add_units(loadgens: list[LoadgenChild], base: str, person_token: str, tokens: dict[str, str],
              units: list[str], kind: str = "whip", record_dir: str = "") -> dict[str, Any]:
    """Publish ``units`` (2 viewers each) on the server at ``base``, spread over ``loadgens``;
    ``record_dir``: Janus records each unit's room there (VideoRoom ``record``)."""
    cmds = [{"cmd": "add", "base": base, "person_token": person_token, "viewers": 2, "kind": kind,
             "record_dir": record_dir, "units": [[u, tokens[u]] for u in units[k::len(loadgens)]]}
            for k in range(len(loadgens))]
    answers = _all(loadgens, cmds, timeout=60 + 5 * len(units))
    return {"connect_s": max(a["connect_s"] for a in answers),
            "failed": [f for a in answers for f in a["failed"]],
            "errors": [e for a in answers for e in a["errors"]]}


# --- one measurement window ------------------------------------------------------------------

@dataclass
class Window:
    """What happened during one steady-state window."""

    units: int
    seconds: float
    server_cpu_pct: float  # % of one core
    loadgen_cpu_pct: list[float]
    machine_busy_pct: float  # % of all cores (100% per core), steal excluded
    machine_steal_pct: float
    others_cpu_pct: float  # machine busy minus server and loadgens: other tenants of the machine
    publisher_fps_min: float = 0.0
    publisher_fps_median: float = 0.0
    viewer_fps_median: float = 0.0
    # Of the frames a publisher sent in the window (up to 1 s before its end), the share that
    # reached a viewer within 1 s: lowest and median over viewers. None when the frames viewers
    # get are not the frames sent (the re-encoding baseline).
    delivered_min: float | None = None
    delivered_median: float | None = None
    received_min: float | None = None  # the same, counting late frames too
    viewers_below_target: int = 0
    latency_p95_max_s: float | None = None  # worst viewer's 95th percentile frame latency
    max_gap_s: float = 0.0  # longest pause between two frames at any viewer
    server_udp_drops: int = 0  # datagrams lost to full receive buffers of the server's sockets (workers' too)
    loadgen_udp_drops: int = 0
    server_rss_mb: float = 0.0  # at the end of the window, the server's process tree
    # Audio (Opus packets) received over sent in the window, lowest and median over viewers.
    audio_received_min: float | None = None
    audio_received_median: float | None = None
    latency_all_p95_s: float | None = None  # 95th percentile of every matched frame's latency, all viewers
    worker_cpu_pct: dict[str, float] = field(default_factory=dict)  # by media worker pid (str), % of one core


def measure(server: ServerChild, loadgens: list[LoadgenChild], seconds: float) -> Window:
    """CPU and frames between two marks ``seconds`` apart (the loadgens count on the same clock)."""
    def sample() -> tuple[float, float, list[float], tuple[int, int, int]]:
        return (time.monotonic(), tree_cpu_s(server.pid), [process_cpu_s(lg.pid) for lg in loadgens],
                machine_jiffies())

    def drops() -> tuple[int, int]:
        return sum(udp_drops(p) for p in process_tree(server.pid)), sum(udp_drops(lg.pid) for lg in loadgens)

    d0 = drops()
    for lg in loadgens:
        lg.send({"cmd": "mark"})
    w0 = worker_cpu_s(server.pid)
    t0, s0, l0, m0 = sample()
    first = [lg.receive(30) for lg in loadgens]
    time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
    for lg, mark in zip(loadgens, first, strict=True):
        lg.send({"cmd": "mark", "since": mark["t"]})
    t1, s1, l1, m1 = sample()
    w1 = worker_cpu_s(server.pid)
    second = [lg.receive(30) for lg in loadgens]
    d1 = drops()
    wall = t1 - t0
    busy, steal, total = (b - a for a, b in zip(m0, m1, strict=True))
    ncpu = os.cpu_count() or 1
    win = Window(
        units=sum(len(m["sent"]) for m in second),
        seconds=round(wall, 3),
        server_cpu_pct=round(100 * (s1 - s0) / wall, 2),
        loadgen_cpu_pct=[round(100 * (b - a) / wall, 2) for a, b in zip(l0, l1, strict=True)],
        machine_busy_pct=round(100 * ncpu * busy / max(total, 1), 1),
        machine_steal_pct=round(100 * ncpu * steal / max(total, 1), 1),
        others_cpu_pct=round(100 * ncpu * busy / max(total, 1) - 100 * (s1 - s0 + sum(l1) - sum(l0)) / wall, 1),
        server_udp_drops=max(0, d1[0] - d0[0]),
        loadgen_udp_drops=max(0, d1[1] - d0[1]),
        server_rss_mb=tree_rss_mb(server.pid),
        worker_cpu_pct={str(p): round(100 * (w1[p] - w0[p]) / wall, 2) for p in w1 if p in w0},
    )
    pub_fps: list[float] = []
    view_fps: list[float] = []
    on_time: list[float] = []
    received: list[float] = []
    latency: list[float] = []
    all_latencies: list[float] = []
    audio: list[float] = []
    gaps: list[float] = [0.0]
    matched = False
    for a, b in zip(first, second, strict=True):
        span = b["t"] - a["t"]
        for unit, sent in b["sent"].items():
            pub_fps.append((sent - a["sent"].get(unit, 0)) / span)
            before = a["received"].get(unit) or [0] * len(b["received"][unit])
            view_fps.extend((got - was) / span for got, was in zip(b["received"][unit], before, strict=False))
            frames = b["window"][unit]
            all_latencies += frames.get("latencies", [])
            audio_sent = b.get("audio_sent", {}).get(unit, 0) - a.get("audio_sent", {}).get(unit, 0)
            audio_before = a.get("audio_received", {}).get(unit) or [0] * len(b.get("audio_received", {}).get(unit, []))
            if audio_sent > 0:
                audio += [min(1.0, (got - was) / audio_sent)
                          for got, was in zip(b["audio_received"][unit], audio_before, strict=False)]
            for k, v in enumerate(frames["viewers"]):
                gaps.append(v["max_gap_s"])
                unmatched = b["unmatched"][unit][k] - (a["unmatched"].get(unit) or [0] * (k + 1))[k]
                matched = matched or unmatched < (b["received"][unit][k] - before[k])
                if frames["sent"]:
                    on_time.append(v["on_time"] / frames["sent"])
                    received.append(v["received"] / frames["sent"])
                if v["latency_p95_s"] is not None:
                    latency.append(v["latency_p95_s"])
    if pub_fps:
        win.publisher_fps_min = round(min(pub_fps), 2)
        win.publisher_fps_median = round(statistics.median(pub_fps), 2)
        win.viewer_fps_median = round(statistics.median(view_fps), 2) if view_fps else 0.0
        win.max_gap_s = round(max(gaps), 3)
    if on_time and matched:
        win.delivered_min = round(min(on_time), 4)
        win.delivered_median = round(statistics.median(on_time), 4)
        win.received_min = round(min(received), 4)
        win.viewers_below_target = sum(r < DELIVERY_TARGET for r in on_time)
        win.latency_p95_max_s = max(latency) if latency else None
        if all_latencies:
            all_latencies.sort()
            win.latency_all_p95_s = all_latencies[max(0, math.ceil(0.95 * len(all_latencies)) - 1)]
    if audio:
        win.audio_received_min = round(min(audio), 4)
        win.audio_received_median = round(statistics.median(audio), 4)
    return win


def per_worker(win: Window, idle: Window, units: dict[int, int]) -> list[dict[str, Any]]:
    """Each media worker's CPU per unit in ``win`` (its CPU less its idle CPU, over its units)."""
    out = []
    for pid, cpu in sorted(win.worker_cpu_pct.items()):
        n = units.get(int(pid), 0)
        base = idle.worker_cpu_pct.get(pid, 0.0)
        out.append({"pid": int(pid), "units": n, "cpu_pct": cpu, "idle_cpu_pct": base,
                    "per_unit_cpu_pct": round((cpu - base) / n, 2) if n else None})
    return out


# --- the benchmark ---------------------------------------------------------------------------

@dataclass
class Bench:
    plan: Plan
    work: Path  # temporary: config and data directory
    logs: Path  # kept: server and loadgen logs
    max_units: int
    config: Path = Path()
    servers: dict[str, ServerChild] = field(default_factory=dict)  # forward, baseline, floor
    loadgens: list[LoadgenChild] = field(default_factory=list)
    unit_tokens: dict[str, str] = field(default_factory=dict)
    person_token: str = ""
    person_tokens: dict[str, str] = field(default_factory=dict)  # a server with a data directory of its own
    started: float = field(default_factory=time.monotonic)
    labels: tuple[str, ...] = SERVERS  # servers measured in the CPU rounds, in alternating order
    ramp_label: str = "forward"  # the server the unit ramp and late viewers run against
    pinning: Pinning | None = None  # None: children run on every core

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {text}", flush=True)

    def check_deadline(self) -> None:
        if time.monotonic() - self.started > self.plan.deadline_s:
            raise TimeoutError(f"benchmark ran past its {self.plan.deadline_s:g} s deadline")

    @property
    def forward(self) -> ServerChild:
        return self.servers[self.ramp_label]

    def server_argv(self) -> dict[str, list[str]]:
        return {
            "forward": [PYTHON, "-m", "dispatch_server", "--config", str(self.config), "serve"],
            "baseline": [PYTHON, "-m", "bench.baseline_server"],
            "floor": [PYTHON, "-m", "bench.baseline_server", "--passthrough"],
        }

    def write_configs(self) -> None:
        # The relay benchmark measures forwarding alone; bench.record measures recording on top.
        self.config = write_config(self.work / "config.toml", self.work / "data", "[archive]\nenabled = false\n")

    # setup ---------------------------------------------------------------------------------
    def setup(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.write_configs()
        load_cores = self.pinning.load if self.pinning else None
        self.loadgens = [LoadgenChild(f"loadgen{k}", self.logs / f"loadgen{k}.log", load_cores).start()
                         for k in range(self.plan.loadgens)]
        add_user(self.config, PERSON, "operator", PASSWORD)
        self.register_units([_cpu_unit(r, k) for r in range(self.plan.rounds) for k in range(max(self.plan.cpu_units))])
        self.before_servers()
        for name, args in self.server_argv().items():
            self.servers[name] = self.server_child(name, args).start()
        self.person_token = asyncio.run(login(self.forward.url, PERSON, PASSWORD))
        for lg in self.loadgens:
            lg.wait_ready()
        self.say(", ".join(f"{k} {v.url}" for k, v in self.servers.items())
                 + f"; video loop {self.loadgens[0].bitrate / 1000:.0f} kbit/s")

    def before_servers(self) -> None:
        """Last preparations while no server runs (units and people are registered)."""

    def server_child(self, name: str, argv: list[str]) -> ServerChild:
        return ServerChild(name, argv, self.logs / f"{name}-server.log", self.pinning.server if self.pinning else None)

    def register_units(self, ids: list[str]) -> None:
        """``add-unit`` through the CLI for the ids not registered yet (one at a time: concurrent
        CLI writers only wait on each other's SQLite lock)."""
        missing = [u for u in ids if u not in self.unit_tokens]
        started = time.monotonic()
        for unit in missing:
            self.unit_tokens[unit] = add_unit(self.config, unit)
        if missing:
            self.say(f"registered {len(missing)} unit(s) through the CLI in {time.monotonic() - started:.1f} s")

    def close(self) -> None:
        for lg in self.loadgens:
            with contextlib.suppress(Exception):
                lg.stop()
        for server in self.servers.values():
            with contextlib.suppress(Exception):
                server.stop()

    def _servers_alive(self) -> None:
        for server in self.servers.values():
            if server.stopped:
                continue
            if not server.alive():
                raise RuntimeError(f"{server.name} server exited:\n" + "\n".join(list(server.log)[-40:]))

    def _add(self, server: ServerChild, units: list[str], loadgens: list[LoadgenChild],
             kind: str = "whip") -> dict[str, Any]:
        return add_units(loadgens, server.url, self.person_tokens.get(server.name, self.person_token),
                         {u: self.unit_tokens.get(u, "any") for u in units}, units, kind, self._record_dir(kind))

    def _record_dir(self, kind: str) -> str:
        """Where a reference server of ``kind`` records ("" = it does not)."""
        return ""

    # 1. CPU per unit -----------------------------------------------------------------------
    def cpu_rounds(self) -> list[dict[str, Any]]:
        lg = self.loadgens[:1]
        rounds = []
        for r in range(self.plan.rounds):
            order = list(self.labels) if r % 2 == 0 else list(reversed(self.labels))
            for label in order:
                self.check_deadline()
                server = self.servers[label]
                lg[0].request({"cmd": "clear"}, timeout=60)
                time.sleep(SETTLE_S)
                idle = measure(server, lg, self.plan.idle_s)
                entry: dict[str, Any] = {"round": r + 1, "server": label, "idle_cpu_pct": idle.server_cpu_pct,
                                         "steps": []}
                units: list[str] = []
                for n in self.plan.cpu_units if label != "floor" else self.plan.cpu_units[-1:]:
                    more = [_cpu_unit(r, k) for k in range(len(units), n)]
                    added = self._add(server, more, lg)
                    units += more
                    if added["failed"]:
                        raise RuntimeError(f"{label}: could not connect {added['failed']}: {added['errors']}")
                    time.sleep(self.plan.warmup_s)
                    win = measure(server, lg, self.plan.window_s)
                    per_unit = (win.server_cpu_pct - idle.server_cpu_pct) / n
                    workers = per_worker(win, idle, units_by_worker(server.log_path))
                    entry["steps"].append({**asdict(win), "per_unit_cpu_pct": round(per_unit, 2),
                                           "connect_errors": added["errors"], "workers": workers})
                    if workers:
                        self.say(f"round {r + 1} {label} {n} unit(s): " + "; ".join(
                            f"worker pid {w['pid']}: {w['units']} unit(s), {w['cpu_pct']:.1f}% (idle "
                            f"{w['idle_cpu_pct']:.1f}%) -> {w['per_unit_cpu_pct']}%/unit" for w in workers)
                            + f"; front {win.server_cpu_pct - sum(win.worker_cpu_pct.values()):.1f}%")
                    self.say(f"round {r + 1} {label:8s} {n} unit(s): server {win.server_cpu_pct:5.1f}% "
                             f"(idle {idle.server_cpu_pct:.1f}%) -> {per_unit:5.2f}%/unit; loadgen "
                             f"{win.loadgen_cpu_pct[0]:.0f}%, others {win.others_cpu_pct:.0f}%, steal "
                             f"{win.machine_steal_pct:.0f}%, viewers {win.viewer_fps_median:.1f} fps")
                    self._servers_alive()
                rounds.append(entry)
        lg[0].request({"cmd": "clear"}, timeout=60)
        return rounds

    # 2 and 3. ramp on the forwarding server, late viewers on the way -----------------------
    def ramp(self) -> tuple[list[dict[str, Any]], str, dict[str, Any]]:
        """Add units step by step until a step fails; late viewers run at the first passing step
        with at least ``LATE_BACKGROUND_UNITS`` units (or where the ramp stops, if earlier)."""
        steps: list[dict[str, Any]] = []
        late: dict[str, Any] = {}
        stop_reason = f"reached --max-units {self.max_units}"
        running: list[str] = []
        for target in self.plan.ramp:
            self.check_deadline()
            more = [f"u{k:03d}" for k in range(len(running), target)]
            self.register_units(more)
            added = self._add(self.forward, more, self.loadgens)
            running += [u for u in more if u not in added["failed"]]
            time.sleep(self.plan.ramp_warmup_s)
            windows = [self._judge(measure(self.forward, self.loadgens, self.plan.ramp_window_s), added)]
            if not windows[0]["passed"] and not added["failed"]:
                # A noisy neighbour can spoil one window: a failing step gets one more, which decides.
                windows.append(self._judge(measure(self.forward, self.loadgens, self.plan.ramp_window_s), added))
            step = {"target_units": target, "connect_s": added["connect_s"], "connect_failed": added["failed"],
                    "connect_errors": added["errors"], "passed": windows[-1]["passed"],
                    "reasons": windows[-1]["reasons"], "windows": windows}
            steps.append(step)
            self._servers_alive()
            if not late and ((step["passed"] and len(running) >= LATE_BACKGROUND_UNITS) or not step["passed"]):
                late = self.late_viewers(len(running))
            if not step["passed"]:
                stop_reason = f"{target} units: " + "; ".join(step["reasons"])
                break
        return steps, stop_reason, late

    def _judge(self, win: Window, added: dict[str, Any]) -> dict[str, Any]:
        reasons = []
        if added["failed"]:
            reasons.append(f"{len(added['failed'])} unit(s) could not connect in {CONNECT_ATTEMPTS} attempts")
        if win.delivered_min is None:
            reasons.append("no frame matched what the publishers sent")
        elif win.viewers_below_target:
            reasons.append(f"{win.viewers_below_target} viewer(s) got fewer than {DELIVERY_TARGET:.0%} of the frames "
                           f"within 1 s (lowest {win.delivered_min:.1%}, {win.received_min:.1%} counting late ones)")
        loadgen_limited = win.publisher_fps_min < MIN_SEND_FPS
        if loadgen_limited:
            reasons.append(f"a publisher sent only {win.publisher_fps_min:.1f} fps (its session ended, or the "
                           "load generator could not keep up)")
        retries = len(added["errors"])
        self.say(f"ramp {win.units:3d} units: server {win.server_cpu_pct:5.1f}%, loadgens "
                 f"{'+'.join(f'{c:.0f}' for c in win.loadgen_cpu_pct)}%, others {win.others_cpu_pct:.0f}%, steal "
                 f"{win.machine_steal_pct:.0f}%, pub {win.publisher_fps_median:.1f} fps, on time min "
                 f"{win.delivered_min or 0:.2%} median {win.delivered_median or 0:.2%}, latency p95 "
                 f"{win.latency_p95_max_s or 0:.2f} s, max gap {win.max_gap_s:.2f} s, "
                 f"udp drops server {win.server_udp_drops} loadgens {win.loadgen_udp_drops}, connect "
                 f"{added['connect_s']:.1f} s{f' ({retries} failed attempt(s))' if retries else ''} -> "
                 f"{'pass' if not reasons else 'FAIL: ' + '; '.join(reasons)}")
        return {**asdict(win), "passed": not reasons, "loadgen_limited": loadgen_limited, "reasons": reasons}

    def late_viewers(self, running_units: int, label: str = "", unit: str = "u000") -> dict[str, Any]:
        server = self.servers[label] if label else self.forward
        answer = self.loadgens[0].request({
            "cmd": "late", "base": server.url, "person_token": self.person_tokens.get(server.name, self.person_token),
            "unit": unit,
            "kind": "janus" if label == "janus" else "whip",
            "trials": self.plan.late_trials, "timeout_s": LATE_TIMEOUT_S,
        }, timeout=30 + (LATE_TIMEOUT_S + 3) * self.plan.late_trials)
        trials = answer["trials"]
        ok = [t for t in trials if "error" not in t]
        result: dict[str, Any] = {"trials": len(trials), "failed": len(trials) - len(ok),
                                  "background_units": running_units, "samples": trials}
        if ok:
            # A trial without a frame within LATE_TIMEOUT_S counts as infinitely late.
            missing = [math.inf] * result["failed"]
            from_answer = sorted(t["from_answer_s"] for t in ok)
            from_post = sorted(t["from_post_s"] for t in ok)
            result.update(
                p50_s=_finite(statistics.median(from_answer + missing)), p95_s=_finite(_p95(from_answer + missing)),
                max_ok_s=_finite(from_answer[-1]), p50_from_post_s=_finite(statistics.median(from_post + missing)),
                p95_from_post_s=_finite(_p95(from_post + missing)), all_keyframes=all(t["keyframe"] for t in ok),
            )
        self.say(f"late viewer of {server.name} ({running_units} units running): p50 {result.get('p50_s')} s, "
                 f"p95 {result.get('p95_s')} s, no frame within {LATE_TIMEOUT_S:g} s: {result['failed']}/{len(trials)}")
        return result


@dataclass
class SideBySideBench(Bench):
    """This server beside Janus's VideoRoom and aiortc's MediaRelay: server pinned to one core,
    load generators to the other, audio and video, CPU and memory per unit, frames on time."""

    forward_setup: ForwardSetup = field(default_factory=lambda: ForwardSetup.make(None, None))
    recording: bool = False
    janus_records: bool = False  # Janus records its rooms too (VideoRoom .mjr files)
    units_by_server: dict[str, tuple[int, ...]] = field(default_factory=dict)
    workers_config: Path = Path()
    janus_config: janus_server.JanusConfig = field(default_factory=lambda: janus_server.JanusConfig(port=0))

    def _record_dir(self, kind: str) -> str:
        if kind != "janus" or not self.janus_records:
            return ""
        record_dir = self.work / "janus-recordings"
        record_dir.mkdir(exist_ok=True)
        return str(record_dir)

    def write_configs(self) -> None:
        archive = (f'[archive]\nenabled = true\ndir = "{self.work / "archive"}"\nsegment_s = 10.0\nmin_free_bytes = 0\n'
                   if self.recording else "[archive]\nenabled = false\n")
        self.config = write_config(self.work / "config.toml", self.work / "data", archive)
        # The multi-worker server runs beside the single-process one: its own data directory (a
        # copy, made before either starts, so the same units and people) and archive.
        own_archive = archive.replace(str(self.work / "archive"), str(self.work / "archive-workers"))
        self.workers_config = write_config(self.work / "config-workers.toml", self.work / "data-workers", own_archive)
        self.janus_config = janus_server.JanusConfig(port=janus_server.free_port(),
                                                     host_address=janus_server.primary_address())
        janus_server.write_config(self.work / "janus", self.janus_config)

    def server_argv(self) -> dict[str, list[str]]:
        forward = [PYTHON, "-m", "dispatch_server", "--config", str(self.config), "serve"]
        workers = [PYTHON, "-m", "dispatch_server", "--config", str(self.workers_config), "serve"]
        argv = {"forward": forward, "forward-workers": workers, "janus": janus_server.command(self.work / "janus"),
                "mediarelay": [PYTHON, "-m", "bench.baseline_server"]}
        return {name: argv[name] for name in self.labels}

    def server_child(self, name: str, argv: list[str]) -> ServerChild:
        cores = self.pinning.server if self.pinning else None
        log = self.logs / f"{name}-server.log"
        if name == "janus":
            return ServerChild(name, argv, log, cores, ready_text=janus_server.READY_TEXT, url=self.janus_config.url)
        env = {"forward": self.forward_setup.env, "forward-workers": self.forward_setup.worker_env()}.get(name, {})
        return ServerChild(name, argv, log, cores, env=env)

    def before_servers(self) -> None:
        self.register_units(_late_units())
        if "forward-workers" in self.labels:
            shutil.copytree(self.work / "data", self.work / "data-workers")

    def setup(self) -> None:
        super().setup()
        if "forward-workers" in self.servers:
            self.person_tokens["forward-workers"] = asyncio.run(login(self.servers["forward-workers"].url, PERSON,
                                                                      PASSWORD))
        if self.pinning:
            children: list[tuple[str, int, frozenset[int]]] = [
                *((c.name, c.pid, self.pinning.server) for c in self.servers.values()),
                *((c.name, c.pid, self.pinning.load) for c in self.loadgens)]
            for name, pid, want in children:
                got = os.sched_getaffinity(pid)
                if got != want:
                    raise RuntimeError(f"{name} runs on cores {sorted(got)}, not {sorted(want)}")

    def clear(self) -> None:
        _all(self.loadgens, [{"cmd": "clear"}] * len(self.loadgens), timeout=120)

    def restart(self, label: str) -> ServerChild:
        """A fresh process for each server's turn: its idle CPU and RSS are those of a server that
        has carried nothing yet (memory that a process keeps after its units left would otherwise
        inflate the next round's idle RSS and hide the per-unit cost), and no other server runs
        meanwhile (in an earlier version, the first Janus unit after a MediaRelay turn lost its
        media within seconds in every run, with the MediaRelay process still up). Janus gets a new
        port, so the load generators open new sessions instead of reusing ones of the old process."""
        self.servers[label].stop()
        if label == "janus":
            self.janus_config = janus_server.JanusConfig(port=janus_server.free_port(),
                                                         host_address=janus_server.primary_address())
            janus_server.write_config(self.work / "janus", self.janus_config)
        self.servers[label] = self.server_child(label, self.server_argv()[label]).start()
        return self.servers[label]

    def direct_floor(self, seconds: float = 5.0) -> dict[str, Any]:
        """Latency of the path without a server (publisher straight to viewer, in a load generator)."""
        answer = self.loadgens[0].request({"cmd": "direct", "seconds": seconds}, timeout=60 + seconds)
        self.say(f"direct path (no server): {answer['frames']}/{answer['sent']} frames, latency p50 "
                 f"{answer['latency_p50_s'] * 1000:.1f} ms, p95 {answer['latency_p95_s'] * 1000:.1f} ms")
        return {k: v for k, v in answer.items() if k != "ok"}

    def side_rounds(self) -> list[dict[str, Any]]:
        rounds = []
        for r in range(self.plan.rounds):
            order = list(self.labels) if r % 2 == 0 else list(reversed(self.labels))
            for label in order:
                self.check_deadline()
                self.clear()
                server = self.restart(label)
                time.sleep(SETTLE_S)
                idle = measure(server, self.loadgens, self.plan.idle_s)
                entry: dict[str, Any] = {"round": r + 1, "server": label, "idle_cpu_pct": idle.server_cpu_pct,
                                         "idle_rss_mb": idle.server_rss_mb, "steps": []}
                attempted = 0
                for n in self.units_by_server[label]:
                    more = [_cpu_unit(r, k) for k in range(attempted, n)]
                    attempted = n
                    added = self._add(server, more, self.loadgens, _kind(label))
                    time.sleep(self.plan.warmup_s)
                    win = measure(server, self.loadgens, self.plan.window_s)
                    step = self._side_step(label, n, idle, win, added)
                    entry["steps"].append(step)
                    self._servers_alive()
                rounds.append(entry)
                self.clear()
                server.stop()  # only the server whose turn it is runs (see restart())
        return rounds

    def _side_step(self, label: str, n: int, idle: Window, win: Window, added: dict[str, Any]) -> dict[str, Any]:
        per_unit = (win.server_cpu_pct - idle.server_cpu_pct) / win.units if win.units else None
        rss_per_unit = (win.server_rss_mb - idle.server_rss_mb) / win.units if win.units else None
        self.say(f"{label:15s} {n:2d} unit(s){f' ({win.units} connected)' if win.units != n else ''}: server "
                 f"{win.server_cpu_pct:5.1f}% (idle {idle.server_cpu_pct:.1f}%) -> {per_unit or 0:5.2f}%/unit, "
                 f"RSS {win.server_rss_mb:.0f} MB ({rss_per_unit or 0:+.1f}/unit); on time min "
                 f"{win.delivered_min or 0:.1%} median {win.delivered_median or 0:.1%}, audio min "
                 f"{win.audio_received_min or 0:.1%}, latency p95 {(win.latency_all_p95_s or 0) * 1000:.0f} ms, "
                 f"pub {win.publisher_fps_min:.1f} fps; loadgens {'+'.join(f'{c:.0f}' for c in win.loadgen_cpu_pct)}%"
                 f", others {win.others_cpu_pct:.0f}%, steal {win.machine_steal_pct:.0f}%"
                 + (f"; {len(added['failed'])} unit(s) failed to connect" if added["failed"] else ""))
        workers = per_worker(win, idle, units_by_worker(self.servers[label].log_path))
        if workers:
            self.say(f"{label:15s} {n:2d} unit(s): " + "; ".join(
                f"worker pid {w['pid']} {w['units']} unit(s) {w['cpu_pct']:.1f}% (idle {w['idle_cpu_pct']:.1f}%)"
                f" -> {w['per_unit_cpu_pct'] if w['per_unit_cpu_pct'] is not None else '-'}%/unit" for w in workers)
                + f"; front {win.server_cpu_pct - sum(win.worker_cpu_pct.values()):.1f}%")
        return {**asdict(win), "target_units": n, "workers": workers,
                "per_unit_cpu_pct": None if per_unit is None else round(per_unit, 3),
                "rss_per_unit_mb": None if rss_per_unit is None else round(rss_per_unit, 2),
                "connect_s": added["connect_s"], "connect_failed": added["failed"], "connect_errors": added["errors"]}

    def late_all(self) -> dict[str, Any]:
        """Late viewers of each server but MediaRelay, while ``LATE_BACKGROUND_UNITS`` units run."""
        out: dict[str, Any] = {}
        for label in [s for s in self.labels if s != "mediarelay"]:
            self.check_deadline()
            self.clear()
            added = self._add(self.restart(label), _late_units(), self.loadgens, _kind(label))
            if _late_units()[0] in added["failed"]:
                out[label] = {"error": f"the late viewers' unit did not connect: {added['errors']}"}
                continue
            time.sleep(self.plan.warmup_s)
            out[label] = self.late_viewers(len(_late_units()) - len(added["failed"]), label, _late_units()[0])
            self.clear()
            self.servers[label].stop()
        return out


def _kind(label: str) -> str:
    return "janus" if label == "janus" else "whip"


def _late_units() -> list[str]:
    return [f"late{k}" for k in range(LATE_BACKGROUND_UNITS)]


def _cpu_unit(round_index: int, k: int) -> str:
    """Fresh unit ids per CPU round: a unit that publishes again after a pause can be ended by the
    server's silence watchdog before its first packet (see docs/benchmarks.md), which is not what
    this phase measures."""
    return f"c{round_index + 1}-{k}"


def _finite(value: float) -> float | None:
    """Seconds rounded to ms; None stands for "never" (JSON has no infinity)."""
    return round(value, 3) if math.isfinite(value) else None


def _p95(samples: list[float]) -> float:
    """Nearest-rank 95th percentile (the 19th of 20 samples)."""
    values = sorted(samples)
    return values[max(0, math.ceil(0.95 * len(values)) - 1)]


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
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
    args = side_by_side.parse_args(argv, __doc__.split("\n\n")[0])
    without = set(args.without)
    if "janus" not in without and not janus_server.installed():
        print(janus_server.INSTALL_HINT + " (or leave it out: --without janus)", file=sys.stderr)
        return 2
    setup = ForwardSetup.make(args.engine, args.workers)
    pinning = Pinning.plan()
    plan = Plan.side_by_side(args.quick, args.max_units, args.rounds)
    units = plan.cpu_units
    mediarelay_units = MEDIARELAY_UNITS_QUICK if args.quick else MEDIARELAY_UNITS
    labels = ["forward", *(["forward-workers"] if setup.workers else []),
              *(s for s in ("janus", "mediarelay") if s not in without)]
    units_by_server = {label: mediarelay_units if label == "mediarelay" else units for label in labels}
    if "forward-workers" in labels:  # the single process also at each worker's share (the workers' verdict)
        units_by_server["forward"] = side_by_side.with_worker_shares(units, setup.workers)
    out = Path(args.out)
    if not out.is_absolute():
        out = REPO / out
    command = "python -m bench.relay " + " ".join(argv if argv is not None else sys.argv[1:])
    result: dict[str, Any] = {
        "command": command.strip(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(), "plan": asdict(plan), "pinning": pinning.describe(),
        "units_by_server": units_by_server,
        "forward_server": {"engine": setup.engine, "env": setup.env, "workers": setup.workers,
                           "recording": args.recording, "notes": list(setup.notes)},
        "janus_records": args.janus_records,
        "load": {"video": "VP8 640x480@30 pre-encoded loop (field_client.encoded_loop.EncodedLoop)",
                 "audio": f"Opus 20 ms packets, {AUDIO_SPEC.duration_s:g} s pre-encoded loop, "
                          f"{AUDIO_SPEC.bitrate} bit/s",
                 "viewers_per_unit": 2, "delivery_target": DELIVERY_TARGET},
    }
    print(pinning.describe(), flush=True)
    for note in setup.notes:
        print(note, flush=True)
    if mediarelay_units != units and "mediarelay" in labels:
        print(f"MediaRelay runs only {'/'.join(map(str, mediarelay_units))} unit(s): it saturates its core at "
              "about 4 units (decode once, encode per viewer)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp, _signals_raise():
        bench = SideBySideBench(plan, Path(tmp), out.parent / f"{out.stem}-logs", args.max_units,
                                labels=tuple(labels), pinning=pinning, forward_setup=setup,
                                recording=args.recording, janus_records=args.janus_records,
                                units_by_server=units_by_server)
        status = 0
        try:
            bench.setup()
            result["load"]["bitrate_kbps"] = round(bench.loadgens[0].bitrate / 1000)
            result["direct_path"] = bench.direct_floor()
            rounds = bench.side_rounds()
            result["rounds"] = rounds
            result["summary"] = side_by_side.summarize(rounds, result["direct_path"]["latency_p95_s"])
            result["late_viewer"] = bench.late_all()
            if args.ramp:
                bench.restart(bench.ramp_label)
                steps, stop_reason, late = bench.ramp()
                passing = [s["windows"][-1]["units"] for s in steps if s["passed"]]
                result["ramp"] = {"steps": steps, "max_units_passing": max(passing, default=0),
                                  "stop_reason": stop_reason, "late_viewer": late}
        except (Exception, KeyboardInterrupt) as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
            bench.say(f"benchmark failed: {result['error']}")
            status = 1
        finally:
            bench.close()
            result["elapsed_s"] = round(time.monotonic() - bench.started, 1)
    if "summary" not in result and "rounds" in result:
        result["summary"] = side_by_side.summarize(result["rounds"], None)
    result["targets"] = side_by_side.verdicts(result.get("summary", {}), result.get("late_viewer", {}), setup,
                                              args.recording, len(pinning.load), args.janus_records)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    print("\n".join(side_by_side.table(result.get("summary", {}), labels)))
    for label, late in result.get("late_viewer", {}).items():
        print(f"late viewer, {label}: p95 {late.get('p95_s')} s, p50 {late.get('p50_s')} s, "
              f"no frame within {LATE_TIMEOUT_S:g} s: {late.get('failed')}/{late.get('trials')}")
    print(setup.multi_worker_line())
    for name, verdict in result["targets"].items():
        state = {True: "met", False: "MISSED", None: "not measured"}[verdict["pass"]]
        print(f"target {name}: {verdict['target']}: measured {verdict['measured']} -> {state}"
              + (f" ({verdict['note']})" if verdict.get("note") else ""))
    print(f"elapsed {result['elapsed_s']} s; results written to {out}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())

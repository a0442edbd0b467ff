"""Dispatch benchmark: instruction round trip and broadcast with N real field units connected.

    python -m bench.dispatch [--steps 1,200,1000] [--round-trips 300] [--broadcasts 3] [--loadgens 2]
                             [--auto-ack] [--server-src DIR] [--profile] [--out FILE]

``--server-src`` runs another checkout's server (a baseline commit) under the same load;
``--profile`` samples the server with py-spy during the last step's broadcasts. Figures and the
logs of every process go next to ``--out`` (default ``bench/results/dispatch.json``).

Starts a real ``dispatch-server serve`` subprocess (SQLite storage, uvloop: its defaults) and
``--loadgens`` load generator processes (``bench/dispatch_units.py``) that run the field client's
own instruction path (``UnitLink`` + ``InstructionInbox`` + ``OrderDesk``), many units per event
loop, the units shared between them. An operator console (python-socketio, in this process) is
connected to ``/console`` throughout, as in a command room.

For each step N of ``--steps`` (the units stay connected from one step to the next, so each step
adds units):

- **idle**: 5 s with N units connected and nothing sent: server CPU and RSS;
- **round trip**: ``--round-trips`` text instructions, one at a time, each to a unit drawn at
  random from the N: from just before ``POST /api/instructions`` to the moment the unit's desk got
  the order, which the unit's inbox does right after the server acknowledged its ``received``
  (so the instruction is committed as ``delivered``). Also: when the POST was answered, and when
  the console heard ``delivered`` (its ``instruction_update(s)``, batched by the server every
  50 ms);
- **broadcast**: ``--broadcasts`` times ``{"all": true}`` to the N units: time to the first, the
  median and the last unit's delivery, the POST's answer, and the console's last ``delivered``.

The step with one unit is the baseline of the same run. Every phase records the CPU of the server
(all threads and its event-loop thread), of the load generators and of this process, and the whole
machine's split (``/proc/stat``), so a busy machine shows as one. Times are ``time.monotonic()``
(one clock for every process on the machine). Instructions carry a one-day acknowledgement
deadline, so that unanswered ones raise no ``ack_overdue`` alerts during the run. Only 127.0.0.1
traffic; every wait is bounded; every process started is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import aiohttp
import socketio

from bench.harness import (
    PASSWORD,
    REPO,
    cpu_s,
    main_thread_cpu_s,
    pct,
    rss_kib,
    seed,
    start_server,
    stop,
    write_result,
)

TICKS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
RT_TARGET_P99_MS = 200.0
BROADCAST_TARGET_MS = 1000.0
BROADCAST_UNITS = 1000


def machine_ticks() -> list[int]:
    """The first eight fields of /proc/stat's ``cpu`` line (``TICKS``)."""
    with open("/proc/stat", encoding="ascii") as f:
        return [int(v) for v in f.readline().split()[1:9]]


class Meter:
    """CPU of the server, its loop thread, the load generators, this process and the machine
    between :meth:`start` and :meth:`read`, in % of one core (machine: % of all cores)."""

    def __init__(self, server: int, gens: list[int]) -> None:
        self._server, self._gens = server, gens

    def _sample(self) -> tuple[float, float, float, float, float, list[int]]:
        return (time.monotonic(), cpu_s(self._server), main_thread_cpu_s(self._server),
                sum(cpu_s(g) for g in self._gens), cpu_s(os.getpid()), machine_ticks())

    def start(self) -> None:
        self._s0 = self._sample()

    def read(self) -> dict[str, Any]:
        w0, s0, m0, g0, b0, t0 = self._s0
        w1, s1, m1, g1, b1, t1 = self._sample()
        wall = max(1e-6, w1 - w0)
        total = max(1, sum(t1) - sum(t0))
        machine = {name: round((b - a) / total * 100, 1) for name, a, b in zip(TICKS, t0, t1, strict=True)}
        busy_cores = (total - (t1[3] - t0[3]) - (t1[4] - t0[4]) - (t1[7] - t0[7])) / total * (os.cpu_count() or 1)
        mine = (s1 - s0) + (g1 - g0) + (b1 - b0)
        return {
            "wall_s": round(wall, 2),
            "server_cpu_pct": round((s1 - s0) / wall * 100, 1),
            "server_loop_cpu_pct": round((m1 - m0) / wall * 100, 1),
            "server_cpu_s": round(s1 - s0, 3),
            "loadgens_cpu_pct": round((g1 - g0) / wall * 100, 1),
            "loadgens_cpu_s": round(g1 - g0, 3),
            "bench_cpu_pct": round((b1 - b0) / wall * 100, 1),
            "others_cpu_pct": round(max(0.0, busy_cores * 100 - mine / wall * 100), 1),
            "machine_pct": machine,
        }


class Deliveries:
    """When each instruction reached its unit's desk (from the load generators) and when the
    console heard it ``delivered``."""

    def __init__(self) -> None:
        self.unit: dict[str, float] = {}
        self.console: dict[str, float] = {}
        self.changed = asyncio.Event()

    def from_units(self, items: list[list[Any]]) -> None:
        for iid, _unit, t in items:
            self.unit.setdefault(iid, t)
        self.changed.set()

    def from_console(self, views: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        for view in views:
            if view.get("state") == "delivered":
                self.console.setdefault(view["id"], now)
        self.changed.set()

    async def wait(self, ids: set[str], timeout: float, where: str = "unit") -> None:
        seen = self.unit if where == "unit" else self.console
        deadline = time.monotonic() + timeout
        while not ids.issubset(seen):
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(ids - seen.keys())} of {len(ids)} instructions not delivered "
                                   f"({where}) within {timeout:g} s")
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                pass


class Gens:
    """The load generator processes; unit ``i`` belongs to generator ``i % len``."""

    def __init__(self, url: str | list[str], work: Path, logs: Path, lines: list[str], count: int, auto_ack: bool,
                 deliveries: Deliveries) -> None:
        """``url``: the server, or the nodes of a cluster (each generator spreads its units over them)."""
        servers = [url] if isinstance(url, str) else url
        self.procs: list[subprocess.Popen[str]] = []
        self._logs: list[IO[str]] = []
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._deliveries = deliveries
        self._count = count
        loop = asyncio.get_running_loop()
        for g in range(count):
            tokens = work / f"tokens{g}.txt"
            tokens.write_text("\n".join(lines[g::count]) + "\n")
            cmd = [sys.executable, str(REPO / "bench" / "dispatch_units.py"), "--tokens", str(tokens)]
            cmd += [arg for server in servers for arg in ("--server", server)]
            self._logs.append((logs / f"loadgen{g}.log").open("w"))
            proc = subprocess.Popen(cmd + (["--auto-ack"] if auto_ack else []), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=self._logs[-1], text=True, cwd=REPO)
            self.procs.append(proc)
            loop.run_in_executor(None, self._read, proc, loop)

    def _read(self, proc: subprocess.Popen[str], loop: asyncio.AbstractEventLoop) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            msg = json.loads(line)
            if "d" in msg:
                loop.call_soon_threadsafe(self._deliveries.from_units, msg["d"])
            else:
                loop.call_soon_threadsafe(self._answers.put_nowait, msg)

    async def connect(self, n: int, timeout: float = 300.0) -> dict[str, Any]:
        """Connect units ``0..n-1`` (those connected stay); the generators' answers summed."""
        for g, proc in enumerate(self.procs):
            assert proc.stdin is not None
            proc.stdin.write(f"connect {len(range(g, n, self._count))}\n")
            proc.stdin.flush()
        got = [await asyncio.wait_for(self._answers.get(), timeout) for _ in self.procs]
        return {k: sum(a[k] for a in got) for k in ("connected", "failed", "lost")} | {
            "s": max(a["s"] for a in got)}

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc, close_stdin=True, timeout=60)
        for log in self._logs:
            log.close()


def profiler(pid: int, out: Path) -> subprocess.Popen[str]:
    """py-spy sampling ``pid`` (all threads, native frames) into ``out`` as collapsed stacks, until
    SIGINT. Needs ``pip install py-spy`` and root (ptrace)."""
    spy = Path(sys.executable).with_name("py-spy")
    with out.with_suffix(".log").open("w") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "100", "--native",
                                 "--threads", "--output", str(out)],
                                stdout=subprocess.DEVNULL, stderr=log, text=True)


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(statistics.median(values), 1), "p99": round(pct(values, 99), 1),
            "max": round(max(values), 1)}


async def post(http: aiohttp.ClientSession, url: str, auth: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(f"{url}/api/instructions", headers=auth, json=body,
                         timeout=aiohttp.ClientTimeout(total=60)) as r:
        if r.status != 201:
            raise RuntimeError(f"POST /api/instructions: {r.status} {await r.text()}")
        got: dict[str, Any] = await r.json()
        return got


async def round_trips(http: aiohttp.ClientSession, url: str, auth: dict[str, str], deliveries: Deliveries,
                      n_units: int, count: int, rng: random.Random) -> dict[str, Any]:
    unit_ms, api_ms, sent = [], [], []
    for k in range(count):
        unit_id = f"u{rng.randrange(n_units):04d}"
        t0 = time.monotonic()
        body = await post(http, url, auth, {"unit": unit_id, "type": "text", "text": f"rt {n_units}/{k}",
                                            "ttl_s": 600, "ack_deadline_s": 86400})
        api_ms.append((time.monotonic() - t0) * 1000)
        iid = body["id"]
        await deliveries.wait({iid}, 30)
        unit_ms.append((deliveries.unit[iid] - t0) * 1000)
        sent.append((iid, t0))
    await deliveries.wait({iid for iid, _ in sent}, 10, "console")
    console_ms = [(deliveries.console[iid] - t0) * 1000 for iid, t0 in sent]
    return {"delivered_ms": summary(unit_ms), "api_ms": summary(api_ms), "console_ms": summary(console_ms)}


async def broadcast(http: aiohttp.ClientSession, url: str, auth: dict[str, str], deliveries: Deliveries,
                    meter: Meter, n_units: int, b: int) -> dict[str, Any]:
    meter.start()
    t0 = time.monotonic()
    body = await post(http, url, auth, {"all": True, "type": "text", "text": f"broadcast {n_units}/{b}",
                                        "ttl_s": 600, "ack_deadline_s": 86400})
    t_api = time.monotonic()
    ids = set(body["ids"])
    await deliveries.wait(ids, 60)
    cpu = meter.read()
    await deliveries.wait(ids, 30, "console")
    times = sorted((deliveries.unit[i] - t0) * 1000 for i in ids)
    return {
        "targets": len(ids),
        "api_ms": round((t_api - t0) * 1000, 1),
        "first_ms": round(times[0], 1),
        "p50_ms": round(statistics.median(times), 1),
        "last_ms": round(times[-1], 1),
        "console_last_ms": round(max(deliveries.console[i] - t0 for i in ids) * 1000, 1),
        "server_cpu_s": cpu["server_cpu_s"],
        "loadgens_cpu_s": cpu["loadgens_cpu_s"],
        "cpu": cpu,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    steps = sorted(args.steps)
    work = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    logs = Path(args.out).with_name(Path(args.out).stem + "-logs")
    logs.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    lines = seed(data, [f"u{i:04d}" for i in range(steps[-1])])
    cfg = work / "config.toml"
    # Every simulated unit connects from 127.0.0.1: lift the per-address connection cap.
    cfg.write_text(f'[storage]\ndata_dir = "{data}"\n[server]\nport = 0\nmax_connections_per_address = 1000000\n'
                   '[alerts]\nsweep_interval_s = 1.0\n[metrics]\nport = -1\n')
    started = time.time()
    load_before = os.getloadavg()
    server_log = (logs / "server.log").open("w")
    try:
        return await measure(args, steps, work, logs, lines, cfg, server_log, started, load_before)
    finally:
        server_log.close()
        shutil.rmtree(work, ignore_errors=True)


async def measure(args: argparse.Namespace, steps: list[int], work: Path, logs: Path, lines: list[str], cfg: Path,
                  server_log: IO[str], started: float, load_before: tuple[float, float, float]) -> dict[str, Any]:
    server, url = start_server(cfg, log=server_log, source=args.server_src)
    deliveries = Deliveries()
    console = socketio.AsyncClient(reconnection=False)
    console.on("instruction_update", lambda v: deliveries.from_console([v]), namespace="/console")
    console.on("instruction_updates", lambda b: deliveries.from_console(b["instructions"]), namespace="/console")
    gens: Gens | None = None
    rng = random.Random(args.seed)
    results: list[dict[str, Any]] = []
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/api/login", json={"username": "bench", "password": PASSWORD}) as r:
                token = (await r.json())["token"]
            auth = {"Authorization": f"Bearer {token}"}
            await console.connect(url, namespaces=["/console"], auth={"token": token}, transports=["websocket"],
                                  wait_timeout=30)
            gens = Gens(url, work, logs, lines, args.loadgens, args.auto_ack, deliveries)
            meter = Meter(server.pid, [p.pid for p in gens.procs])
            await asyncio.sleep(2.0)
            meter.start()
            await asyncio.sleep(args.idle_s)
            no_units = {"units": 0, "rss_mib": round(rss_kib(server.pid) / 1024, 1), "idle": meter.read()}
            for n in steps:
                step: dict[str, Any] = {"units": n}
                meter.start()
                step["connect"] = await gens.connect(n)
                step["connect"]["cpu"] = meter.read()
                if step["connect"]["connected"] != n:
                    raise RuntimeError(f"only {step['connect']['connected']} of {n} units connected")
                await asyncio.sleep(3.0)  # presence updates and console roster events settle
                meter.start()
                await asyncio.sleep(args.idle_s)
                step["idle"] = meter.read()
                step["rss_mib"] = round(rss_kib(server.pid) / 1024, 1)
                meter.start()
                step["round_trip"] = await round_trips(http, url, auth, deliveries, n, args.round_trips, rng)
                step["round_trip"]["cpu"] = meter.read()
                step["broadcasts"] = []
                profiled = args.profile and n == steps[-1]
                spy = profiler(server.pid, logs / f"server-broadcast-{n}.txt") if profiled else None
                try:
                    for b in range(args.broadcasts if n >= args.broadcast_from else 0):
                        await asyncio.sleep(2.0)
                        step["broadcasts"].append(await broadcast(http, url, auth, deliveries, meter, n, b))
                finally:
                    if spy is not None:
                        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
                        try:
                            await asyncio.to_thread(spy.wait, 30)
                        finally:
                            stop(spy)
                if step["broadcasts"]:
                    step["broadcast_last_ms_median"] = round(
                        statistics.median(b["last_ms"] for b in step["broadcasts"]), 1)
                step["lost_links"] = (await gens.connect(n))["lost"]
                results.append(step)
                print(json.dumps({k: step[k] for k in ("units", "rss_mib", "lost_links")}
                                 | {"rt": step["round_trip"]["delivered_ms"],
                                    "broadcast_last_ms": [b["last_ms"] for b in step["broadcasts"]]}), flush=True)
    finally:
        try:
            await console.disconnect()
        except Exception:  # the server may be gone already; we are leaving anyway
            pass
        if gens is not None:
            gens.stop()
        stop(server)
    base = results[0]["round_trip"]["delivered_ms"]
    for step in results:
        rt = step["round_trip"]["delivered_ms"]
        step["round_trip"]["vs_baseline"] = {"p50": round(rt["p50"] / base["p50"], 2),
                                             "p99": round(rt["p99"] / base["p99"], 2)}
    targets = {}
    for step in results:
        if step["units"] >= 200:
            p99 = step["round_trip"]["delivered_ms"]["p99"]
            targets[f"round_trip_p99_{step['units']}"] = {"measured_ms": p99, "target_ms": RT_TARGET_P99_MS,
                                                           "met": p99 < RT_TARGET_P99_MS}
        if step["units"] >= BROADCAST_UNITS and step.get("broadcast_last_ms_median") is not None:
            last = step["broadcast_last_ms_median"]
            targets[f"broadcast_{step['units']}"] = {"median_last_ms": last, "target_ms": BROADCAST_TARGET_MS,
                                                     "met": last < BROADCAST_TARGET_MS,
                                                     "runs_ms": [b["last_ms"] for b in step["broadcasts"]]}
    return {
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "loadgens": args.loadgens,
        "auto_ack": args.auto_ack,
        "no_units": no_units,
        "steps": results,
        "targets": targets,
        "logs": str(logs),
        "server_src": str(args.server_src),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=lambda s: [int(v) for v in s.split(",")], default=[1, 200, 1000],
                   help="connected unit counts, comma-separated (default 1,200,1000; the first is the baseline)")
    p.add_argument("--round-trips", type=int, default=300)
    p.add_argument("--broadcasts", type=int, default=3)
    p.add_argument("--broadcast-from", type=int, default=200, help="broadcast at steps of at least this many units")
    p.add_argument("--loadgens", type=int, default=2)
    p.add_argument("--idle-s", type=float, default=5.0)
    p.add_argument("--auto-ack", action="store_true", help="units acknowledge every order (unattended terminals)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--server-src", type=Path, default=REPO,
                   help="run the dispatch_server package of this checkout (default: this one), e.g. a "
                        "baseline: git archive COMMIT | tar -x -C DIR")
    p.add_argument("--profile", action="store_true",
                   help="sample the server with py-spy during the last step's broadcasts (into the logs directory)")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "dispatch.json"))
    args = p.parse_args()
    write_result(args.out, asyncio.run(run(args)))


if __name__ == "__main__":
    main()

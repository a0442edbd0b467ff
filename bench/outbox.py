"""Outbox benchmark (#18): instruction create→delivered on each storage engine, one node and three.

    python -m bench.outbox [--units 1000] [--repeats 3] [--setups sqlite,postgresql,postgresql-3]
                           [--broadcasts 5] [--rate 100] [--steady-s 10] [--burst 500] [--burst-concurrency 16]
                           [--loadgens 2] [--pg-waits] [--server-src DIR] [--quick] [--out FILE]

Setups (``--setups``, in this order within a repeat, reversed in every other repeat):

- ``sqlite``: one ``dispatch-server serve``, ``[storage] url`` empty (the SQLite file; the default);
- ``postgresql``: one node, ``[storage] url`` a fresh database of a PostgreSQL 15 that this
  benchmark starts (``tests/support/postgres_server.py``: ``initdb``/``pg_ctl``, ``fsync=on``);
- ``postgresql-3``: three nodes on that PostgreSQL and one ``redis-server`` (``[redis] url``), each
  node with its own data directory and ``node_id``; the units are spread over the nodes in turn, the
  operator and a console talk to the first node;
- ``postgresql-redis`` (not run by default): one node on PostgreSQL and Redis, which separates what
  Redis costs from what three nodes cost.

Every repeat of every setup starts from a fresh database with ``--units`` units and the operator
``bench``, starts its nodes, and connects the units through ``--loadgens`` load generator processes
(``bench/dispatch_units.py``: the field client's own instruction path, many units per event loop,
as ``bench.dispatch`` does). After a warm-up (one broadcast and ten single instructions, not
counted), three phases, each timed from just before the operator's ``POST /api/instructions`` to
the moment the unit's desk got the instruction (right after the server answered the unit's
``received``, i.e. once the instruction is committed as ``delivered``), measured in the load
generators with ``time.monotonic()`` (one clock for every process of the machine):

- **broadcast**: ``--broadcasts`` times ``{"all": true}`` to every unit, 2 s apart: per broadcast
  the latency of each of its instructions (p50, p99, last) and the throughput, instructions
  delivered per second from the POST to the last delivery;
- **steady**: single-unit instructions at ``--rate`` a second for ``--steady-s`` seconds, each to a
  unit drawn at random, sent on schedule whether or not the earlier ones are answered (open loop):
  latency p50/p99 and the throughput achieved;
- **burst**: ``--burst`` single-unit instructions sent by ``--burst-concurrency`` operator requests
  at a time, as fast as the server answers: the most single instructions a second the setup
  delivers, and their latency under that load.

Each phase records the CPU (100% = one core) of the nodes, of PostgreSQL (the postmaster and its
backends), of redis-server, of the load generators and of this process, and the machine's busy
time that none of these used ("others": other tenants, and the kernel's loopback work). Each
instruction is counted once per unit desk; a second arrival of the same instruction is reported
(``duplicates``). Figures per run, and per setup the median over the repeats with its ratio to the
``sqlite`` setup, go to ``--out`` (default ``bench/results/outbox.json``), the logs of every
process next to it. Only 127.0.0.1 traffic; every wait is bounded; every process started is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp
import socketio

from bench.dispatch import Deliveries, Gens, machine_ticks, post, summary
from bench.harness import PASSWORD, REPO, cpu_s, seed, start_server, stop, write_result
from tests.support.postgres_server import PostgresServer
from tests.support.redis_server import RedisServer

BODY = {"type": "text", "ttl_s": 600, "ack_deadline_s": 86400}  # no ack_overdue alerts during a run


@dataclass(frozen=True)
class Setup:
    name: str
    postgres: bool
    nodes: int
    redis: bool


SETUPS = {s.name: s for s in (Setup("sqlite", False, 1, False), Setup("postgresql", True, 1, False),
                              Setup("postgresql-3", True, 3, True), Setup("postgresql-redis", True, 1, True))}


class CountedDeliveries(Deliveries):
    """:class:`bench.dispatch.Deliveries` that also counts instructions a desk got twice."""

    def __init__(self) -> None:
        super().__init__()
        self.duplicates = 0

    def from_units(self, items: list[list[Any]]) -> None:
        self.duplicates += sum(1 for iid, _unit, _t in items if iid in self.unit)
        super().from_units(items)


class PgWaits:
    """``--pg-waits``: what the run's PostgreSQL backends were doing, sampled every 50 ms from
    ``pg_stat_activity`` on a thread of its own between :meth:`start` and :meth:`read`: counts of
    (state, wait event, the statement's first words), most frequent first."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._counts: collections.Counter[tuple[str, ...]] = collections.Counter()
        self._samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self._url, autocommit=True) as conn:
            while not self._stop.wait(0.05):
                rows = conn.execute(
                    "SELECT state, coalesce(wait_event_type || ':' || wait_event, 'cpu'), "
                    "left(regexp_replace(query, '\\s+', ' ', 'g'), 48) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()
                self._counts.update(tuple(str(v) for v in row) for row in rows if row[0] != "idle")
                self._samples += 1

    def start(self) -> None:
        self._counts.clear()
        self._samples = 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pg-waits", daemon=True)
        self._thread.start()

    def read(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        return {"samples": self._samples,
                "busy": [[n, *key] for key, n in self._counts.most_common(12)]}


class Meter:
    """CPU seconds of each group of processes between :meth:`start` and :meth:`read`; PostgreSQL's
    backends are found anew at each sample (the children of its postmaster)."""

    def __init__(self, nodes: list[int], gens: list[int], postmaster: int | None, redis: int | None,
                 waits: PgWaits | None = None) -> None:
        self._nodes, self._gens, self._postmaster, self._redis = nodes, gens, postmaster, redis
        self._waits = waits

    def _postgres(self) -> float:
        if self._postmaster is None:
            return 0.0
        total = cpu_s(self._postmaster)
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    stat = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
                    if int(stat[1]) == self._postmaster:
                        total += cpu_s(int(entry.name))
                except (OSError, IndexError, ValueError):  # the process ended meanwhile
                    pass
        return total

    def _sample(self) -> dict[str, Any]:
        return {"t": time.monotonic(), "nodes": [cpu_s(p) for p in self._nodes], "postgres": self._postgres(),
                "redis": cpu_s(self._redis) if self._redis else 0.0, "loadgens": sum(cpu_s(g) for g in self._gens),
                "bench": cpu_s(os.getpid()), "ticks": machine_ticks()}

    def start(self) -> None:
        self._s0 = self._sample()
        if self._waits is not None:
            self._waits.start()

    def read(self) -> dict[str, Any]:
        a, b = self._s0, self._sample()
        waits = {} if self._waits is None else {"pg_waits": self._waits.read()}
        wall = max(1e-6, b["t"] - a["t"])
        nodes = [y - x for x, y in zip(a["nodes"], b["nodes"], strict=True)]
        used = {"nodes": sum(nodes)} | {k: b[k] - a[k] for k in ("postgres", "redis", "loadgens", "bench")}
        ticks = [y - x for x, y in zip(a["ticks"], b["ticks"], strict=True)]
        busy_cores = (sum(ticks) - ticks[3] - ticks[4] - ticks[7]) / max(1, sum(ticks)) * (os.cpu_count() or 1)
        return {"wall_s": round(wall, 2), "cpu_s": {k: round(v, 3) for k, v in used.items()},
                "node_cpu_s": [round(v, 3) for v in nodes],
                "cpu_pct": {k: round(v / wall * 100, 1) for k, v in used.items()},
                "others_pct": round(max(0.0, busy_cores * 100 - sum(used.values()) / wall * 100), 1)} | waits


def postmaster_pid(pg: PostgresServer) -> int:
    return int((pg.dir / "data" / "postmaster.pid").read_text().split()[0])


class Cluster:
    """The nodes of one run: ``dispatch-server serve`` processes on one database (and Redis)."""

    def __init__(self, setup: Setup, work: Path, logs: Path, url: str, redis_url: str, source: Path = REPO) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.urls: list[str] = []
        self._logs: list[IO[str]] = []
        try:
            for n in range(setup.nodes):
                cfg = work / f"node{n}.toml"
                text = (f'[storage]\ndata_dir = "{work / f"data{n}"}"\nurl = "{url}"\n'
                        f'[server]\nport = 0\nnode_id = "node-{n}"\nmax_connections_per_address = 1000000\n'
                        '[alerts]\nsweep_interval_s = 1.0\n[metrics]\nport = -1\n')
                if setup.redis:
                    text += f'[redis]\nurl = "{redis_url}"\n'
                cfg.write_text(text)
                self._logs.append((logs / f"node{n}.log").open("w"))
                proc, base = start_server(cfg, timeout=60, log=self._logs[-1], source=source)
                self.procs.append(proc)
                self.urls.append(base)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc)
        for log in self._logs:
            log.close()


async def wait_online(http: aiohttp.ClientSession, url: str, auth: dict[str, str], n: int, timeout: float) -> None:
    """Until the roster of ``url`` shows ``n`` units online (presence crosses nodes through Redis)."""
    deadline = time.monotonic() + timeout
    while True:
        async with http.get(f"{url}/api/units", headers=auth) as r:
            online = sum(u["online"] for u in (await r.json())["units"])
        if online >= n:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{online} of {n} units online on {url} after {timeout:g} s")
        await asyncio.sleep(0.2)


def latencies(deliveries: Deliveries, sent: list[tuple[str, float]]) -> list[float]:
    return [(deliveries.unit[iid] - t0) * 1000 for iid, t0 in sent]


def rate(count: int, start: float, deliveries: Deliveries, ids: list[str]) -> float:
    """Instructions delivered per second, from the first POST to the last delivery."""
    return round(count / max(1e-6, max(deliveries.unit[i] for i in ids) - start), 1)


async def broadcasts(http: aiohttp.ClientSession, url: str, auth: dict[str, str], deliveries: Deliveries,
                     meter: Meter, count: int, n_units: int) -> list[dict[str, Any]]:
    out = []
    for b in range(count):
        await asyncio.sleep(2.0)
        meter.start()
        t0 = time.monotonic()
        body = await post(http, url, auth, {"all": True, "text": f"broadcast {b}"} | BODY)
        t_api = time.monotonic()
        ids = list(body["ids"])
        if len(ids) != n_units:
            raise RuntimeError(f"a broadcast reached {len(ids)} of {n_units} units")
        await deliveries.wait(set(ids), 120)
        lat = latencies(deliveries, [(i, t0) for i in ids])
        out.append({"targets": len(ids), "api_ms": round((t_api - t0) * 1000, 1), "latency_ms": summary(lat),
                    "last_ms": round(max(lat), 1), "per_s": rate(len(ids), t0, deliveries, ids),
                    "cpu": meter.read()})
    return out


async def steady(http: aiohttp.ClientSession, url: str, auth: dict[str, str], deliveries: Deliveries,
                 meter: Meter, per_s: float, seconds: float, n_units: int, rng: random.Random) -> dict[str, Any]:
    """Single-unit instructions on a fixed schedule (open loop): a slow answer delays no later send."""
    count = max(1, round(per_s * seconds))
    sent: list[tuple[str, float]] = []
    lag: list[float] = []  # how late this process sent each POST (its own load, not the server's)

    async def one(k: int, due: float) -> None:
        t0 = time.monotonic()
        lag.append((t0 - due) * 1000)
        body = await post(http, url, auth, {"unit": f"u{rng.randrange(n_units):04d}", "text": f"steady {k}"} | BODY)
        sent.append((body["id"], t0))

    meter.start()
    start = time.monotonic()
    tasks = []
    for k in range(count):
        due = start + k / per_s
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        tasks.append(asyncio.create_task(one(k, due)))
    await asyncio.gather(*tasks)
    ids = [iid for iid, _ in sent]
    await deliveries.wait(set(ids), 120)
    return {"count": count, "target_per_s": per_s, "per_s": rate(count, start, deliveries, ids),
            "latency_ms": summary(latencies(deliveries, sent)), "send_lag_ms": summary(lag), "cpu": meter.read()}


async def burst(http: aiohttp.ClientSession, url: str, auth: dict[str, str], deliveries: Deliveries,
                meter: Meter, count: int, concurrency: int, n_units: int, rng: random.Random) -> dict[str, Any]:
    """``count`` single-unit instructions, ``concurrency`` requests in flight, as fast as answered."""
    sent: list[tuple[str, float]] = []
    todo = iter(range(count))

    async def worker() -> None:
        for k in todo:
            t0 = time.monotonic()
            body = await post(http, url, auth, {"unit": f"u{rng.randrange(n_units):04d}", "text": f"burst {k}"} | BODY)
            sent.append((body["id"], t0))

    meter.start()
    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    api_s = time.monotonic() - start
    ids = [iid for iid, _ in sent]
    await deliveries.wait(set(ids), 120)
    return {"count": count, "concurrency": concurrency, "created_per_s": round(count / api_s, 1),
            "per_s": rate(count, start, deliveries, ids), "latency_ms": summary(latencies(deliveries, sent)),
            "cpu": meter.read()}


async def run_one(args: argparse.Namespace, setup: Setup, repeat: int, pg: PostgresServer | None,
                  redis: RedisServer | None, logs: Path) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"bench-outbox-{setup.name}-"))
    await asyncio.to_thread(logs.mkdir, parents=True, exist_ok=True)
    url = await asyncio.to_thread(pg.fresh_database) if setup.postgres and pg is not None else ""
    if redis is not None:
        await asyncio.to_thread(redis.flush)
    started = time.time()
    lines = await asyncio.to_thread(seed, work / "data0", [f"u{i:04d}" for i in range(args.units)], url)
    cluster = await asyncio.to_thread(Cluster, setup, work, logs, url,
                                      redis.url if redis is not None and setup.redis else "", args.server_src)
    deliveries = CountedDeliveries()
    console = socketio.AsyncClient(reconnection=False)
    gens: Gens | None = None
    rng = random.Random(args.seed + repeat)
    result: dict[str, Any] = {"setup": setup.name, "repeat": repeat,
                              "started_utc": time.strftime("%H:%M:%S", time.gmtime(started)),
                              "loadavg_before": os.getloadavg()}
    try:
        head = cluster.urls[0]
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{head}/api/login", json={"username": "bench", "password": PASSWORD}) as r:
                token = (await r.json())["token"]
            auth = {"Authorization": f"Bearer {token}"}
            await console.connect(head, namespaces=["/console"], auth={"token": token}, transports=["websocket"],
                                  wait_timeout=30)
            gens = Gens(cluster.urls, work, logs, lines, args.loadgens, False, deliveries)
            t0 = time.monotonic()
            connected = await gens.connect(args.units)
            if connected["connected"] != args.units:
                raise RuntimeError(f"only {connected['connected']} of {args.units} units connected")
            await wait_online(http, head, auth, args.units, 60)
            result["connect_s"] = round(time.monotonic() - t0, 2)
            meter = Meter([p.pid for p in cluster.procs], [p.pid for p in gens.procs],
                          postmaster_pid(pg) if setup.postgres and pg is not None else None,
                          redis.proc.pid if setup.redis and redis is not None else None,
                          PgWaits(url) if args.pg_waits and url else None)
            # Warm-up, not counted: the first statements of each kind, the first emits.
            await broadcasts(http, head, auth, deliveries, meter, 1, args.units)
            await burst(http, head, auth, deliveries, meter, 10, 1, args.units, rng)
            result["broadcasts"] = await broadcasts(http, head, auth, deliveries, meter, args.broadcasts, args.units)
            await asyncio.sleep(2.0)
            result["steady"] = await steady(http, head, auth, deliveries, meter, args.rate, args.steady_s,
                                            args.units, rng)
            await asyncio.sleep(2.0)
            result["burst"] = await burst(http, head, auth, deliveries, meter, args.burst, args.burst_concurrency,
                                          args.units, rng)
            result["lost_links"] = (await gens.connect(args.units))["lost"]
            result["duplicates"] = deliveries.duplicates
    finally:
        try:
            await console.disconnect()
        except Exception:  # the node may be gone already; we are leaving anyway
            pass
        if gens is not None:
            gens.stop()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    result["loadavg_after"] = os.getloadavg()
    return result


def figures(run: dict[str, Any]) -> dict[str, float]:
    """The headline figures of one run (broadcasts: the median over the run's broadcasts)."""
    bs = run["broadcasts"]
    return {
        "broadcast_per_s": statistics.median(b["per_s"] for b in bs),
        "broadcast_p50_ms": statistics.median(b["latency_ms"]["p50"] for b in bs),
        "broadcast_p99_ms": statistics.median(b["latency_ms"]["p99"] for b in bs),
        "broadcast_api_ms": statistics.median(b["api_ms"] for b in bs),
        "broadcast_nodes_cpu_s": statistics.median(b["cpu"]["cpu_s"]["nodes"] for b in bs),
        "broadcast_postgres_cpu_s": statistics.median(b["cpu"]["cpu_s"]["postgres"] for b in bs),
        "broadcast_others_pct": statistics.median(b["cpu"]["others_pct"] for b in bs),
        "steady_per_s": run["steady"]["per_s"],
        "steady_p50_ms": run["steady"]["latency_ms"]["p50"],
        "steady_p99_ms": run["steady"]["latency_ms"]["p99"],
        "steady_nodes_cpu_pct": run["steady"]["cpu"]["cpu_pct"]["nodes"],
        "steady_postgres_cpu_pct": run["steady"]["cpu"]["cpu_pct"]["postgres"],
        "burst_per_s": run["burst"]["per_s"],
        "burst_p50_ms": run["burst"]["latency_ms"]["p50"],
        "burst_p99_ms": run["burst"]["latency_ms"]["p99"],
        "burst_nodes_cpu_pct": run["burst"]["cpu"]["cpu_pct"]["nodes"],
        "burst_postgres_cpu_pct": run["burst"]["cpu"]["cpu_pct"]["postgres"],
    }


def summarise(runs: list[dict[str, Any]], setups: list[str]) -> dict[str, Any]:
    """Per setup: each figure's median over the repeats (and the repeats' values), and its ratio to
    the ``sqlite`` setup's median."""
    out: dict[str, Any] = {}
    for name in setups:
        per_run = [figures(r) for r in runs if r["setup"] == name]
        out[name] = {k: {"median": round(statistics.median(f[k] for f in per_run), 1),
                         "runs": [round(f[k], 1) for f in per_run]} for k in per_run[0]}
    if "sqlite" in out:
        base = out["sqlite"]
        for name in setups:
            for k, v in out[name].items():
                b = base[k]["median"]
                v["vs_sqlite"] = round(v["median"] / b, 2) if b else None
    return out


def table(summary_: dict[str, Any]) -> str:
    keys = ("broadcast_per_s", "broadcast_p50_ms", "broadcast_p99_ms", "steady_per_s", "steady_p50_ms",
            "steady_p99_ms", "burst_per_s", "burst_p50_ms", "burst_p99_ms")
    lines = ["| setup | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, figs in summary_.items():
        cells = [f"{figs[k]['median']:g}" + (f" ({figs[k]['vs_sqlite']}x)" if figs[k].get("vs_sqlite") else "")
                 for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    setups = [SETUPS[s] for s in args.setups]
    logs = Path(args.out).with_name(Path(args.out).stem + "-logs")
    started = time.time()
    pg = PostgresServer() if any(s.postgres for s in setups) else None
    redis_dir = Path(tempfile.mkdtemp(prefix="bench-outbox-redis-"))
    redis = RedisServer(redis_dir) if any(s.redis for s in setups) else None
    runs = []
    try:
        for r in range(args.repeats):
            for setup in setups if r % 2 == 0 else setups[::-1]:
                one = await run_one(args, setup, r, pg, redis, logs / f"{setup.name}-{r}")
                runs.append(one)
                f = figures(one)
                print(f"{setup.name} #{r}: broadcast {f['broadcast_per_s']:.0f}/s p99 {f['broadcast_p99_ms']:.0f} ms; "
                      f"steady {f['steady_per_s']:.0f}/s p99 {f['steady_p99_ms']:.1f} ms; "
                      f"burst {f['burst_per_s']:.0f}/s p99 {f['burst_p99_ms']:.0f} ms; "
                      f"duplicates {one['duplicates']}, lost links {one['lost_links']}", flush=True)
    finally:
        if redis is not None:
            redis.stop()
        shutil.rmtree(redis_dir, ignore_errors=True)
        if pg is not None:
            pg.stop()
    summary_ = summarise(runs, [s.name for s in setups])
    print(table(summary_), flush=True)
    return {"started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
            "duration_s": round(time.time() - started, 1), "cpus": os.cpu_count(),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "out"},
            "summary": summary_, "runs": runs,
            "logs": str(logs)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--units", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--setups", type=lambda s: s.split(","), default=["sqlite", "postgresql", "postgresql-3"],
                   help=f"comma-separated, of {', '.join(SETUPS)}; sqlite first is the baseline of the ratios")
    p.add_argument("--broadcasts", type=int, default=5)
    p.add_argument("--rate", type=float, default=100.0, help="single instructions a second in the steady phase")
    p.add_argument("--steady-s", type=float, default=10.0)
    p.add_argument("--burst", type=int, default=500, help="single instructions in the burst")
    p.add_argument("--burst-concurrency", type=int, default=16, help="operator requests in flight in the burst")
    p.add_argument("--loadgens", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--server-src", type=Path, default=REPO,
                   help="run the dispatch_server package of this checkout (default: this one), e.g. a "
                        "baseline: git archive COMMIT | tar -x -C DIR")
    p.add_argument("--pg-waits", action="store_true",
                   help="sample pg_stat_activity every 50 ms in each phase: where PostgreSQL's backends wait")
    p.add_argument("--quick", action="store_true",
                   help="smoke: 100 units, one repeat, 2 broadcasts, 3 s at 50/s, a burst of 100")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "outbox.json"))
    args = p.parse_args()
    unknown = [s for s in args.setups if s not in SETUPS]
    if unknown:
        p.error(f"unknown setup(s) {', '.join(unknown)}; known: {', '.join(SETUPS)}")
    if args.quick:
        args.units, args.repeats, args.broadcasts = 100, 1, 2
        args.rate, args.steady_s, args.burst = 50.0, 3.0, 100
    write_result(args.out, asyncio.run(run(args)))


if __name__ == "__main__":
    main()

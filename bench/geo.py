"""Geo benchmark: N units at 1 Hz into one server; fix-to-console latency, server CPU, nearest query.

    python -m bench.geo [--units 5000] [--transport telemetry|socketio] [--event-loop uvloop|asyncio]
                        [--loadgens 2] [--warmup 10] [--window 20] [--floor] [--storage-url URL] [--out FILE]

Starts ``dispatch-server serve`` and ``--loadgens`` load generator processes (``bench/geo_units.py``,
wire protocols written by hand, cheap enough to leave the CPU to the server) sharing the units.
Connecting and loading are separate phases: every unit connects first (its Socket.IO link, and
with ``--transport telemetry``, the default and what ``field_client`` does, its telemetry
channel too), then all start sending one batch of one fix per second, with the next fix waiting
for the previous acknowledgement. ``--transport socketio`` sends the batches as Socket.IO
``positions`` events instead (the baseline). An operator console (python-socketio, in this
process) records now − the fix's own ``ts`` (the send time; same machine clock) for every
position it receives, in ``unit_positions`` lists or ``unit_status`` events. Reports for the
window: fixes acknowledged per second and the acknowledgement delay, console positions per
second and their latency, CPU of the server (all threads, and its event-loop thread alone) and
of the load generators (100% = one core). Then times ``GET /api/units/nearest`` (k=10) over HTTP
and the in-process ``geo.nearest.NearestIndex`` over the same number of units. ``--floor`` puts
the Socket.IO load on a bare python-socketio server whose handler only acknowledges: the part of
the server's CPU per fix that the Socket.IO stack takes whatever the application does. Only
127.0.0.1 traffic; bounded waits. ``--storage-url postgresql://…`` runs the server on PostgreSQL
(``[storage] url``: its state and the tracks; an empty database, which the run fills).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import socketio

from bench.harness import PASSWORD, REPO, cpu_s, main_thread_cpu_s, pct, seed, start_server, stop, write_result
from geo.nearest import NearestIndex


def nearest_in_process(n: int, queries: int = 2000) -> dict[str, float]:
    rng = random.Random(1)
    index = NearestIndex()
    for i in range(n):
        index.update(f"u{i}", 39.9 + rng.uniform(-0.2, 0.2), 116.4 + rng.uniform(-0.2, 0.2))
    times = []
    for _ in range(queries):
        lat, lon = 39.9 + rng.uniform(-0.3, 0.3), 116.4 + rng.uniform(-0.3, 0.3)
        t0 = time.perf_counter()
        index.nearest(lat, lon, 10)
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(statistics.median(times), 3), "p99_ms": round(pct(times, 99), 3)}


def serve_floor() -> None:
    """``--serve-floor``: a bare python-socketio server whose ``/unit`` ``positions`` handler only
    acknowledges. Under the same load it shows the Socket.IO stack's own cost per event."""
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)

    class Units(socketio.AsyncNamespace):  # type: ignore[misc]  # python-socketio is untyped
        async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
            await self.save_session(sid, {"unit_id": auth["unit_id"]})

        async def on_positions(self, sid: str, data: Any) -> dict[str, Any]:
            await self.get_session(sid)
            return {"ok": True, "accepted": 1, "duplicates": 0, "rejected": []}

    sio.register_namespace(Units("/unit"))

    async def serve() -> None:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        print(f"listening on http://127.0.0.1:{port}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until stdin closes
        await runner.cleanup()

    asyncio.run(serve())


def start_floor() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.geo", "--serve-floor"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on " not in line:
        stop(proc, close_stdin=True)
        raise RuntimeError("the floor server did not start")
    return proc, line.split("listening on ", 1)[1].strip()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-geo-"))
    data = work / "data"
    unit_ids = [f"g{i:05d}" for i in range(args.units)]
    lines = [f"{u} -" for u in unit_ids] if args.floor else seed(data, unit_ids, args.storage_url)
    per = (len(lines) + args.loadgens - 1) // args.loadgens
    token_files = []
    for g in range(args.loadgens):
        f = work / f"tokens{g}.txt"
        f.write_text("\n".join(lines[g * per:(g + 1) * per]) + "\n")
        token_files.append(f)
    cfg = work / "config.toml"
    # Every simulated unit connects from 127.0.0.1: lift the per-address connection cap.
    cfg.write_text(f'[storage]\ndata_dir = "{data}"\nurl = "{args.storage_url}"\n'
                   '[server]\nport = 0\nmax_message_bytes = 65536\n'
                   f'event_loop = "{args.event_loop}"\nmax_connections_per_address = 1000000\n[metrics]\nport = -1\n')
    server, url = start_floor() if args.floor else start_server(cfg)
    gens: list[subprocess.Popen[str]] = []
    console = socketio.AsyncClient(reconnection=False)
    try:
        async with aiohttp.ClientSession() as http:
            token = ""
            if not args.floor:
                async with http.post(f"{url}/api/login", json={"username": "bench", "password": PASSWORD}) as r:
                    token = (await r.json())["token"]
            latencies: list[float] = []
            batches: list[int] = []

            def seen(pos: Any, now: float) -> None:
                if pos and isinstance(pos.get("ts"), str):
                    ts = dt.datetime.fromisoformat(pos["ts"].replace("Z", "+00:00")).timestamp()
                    latencies.append((now - ts) * 1000)

            def on_status(unit: dict[str, Any]) -> None:
                seen(unit.get("position"), time.time())

            def on_positions(batch: dict[str, Any]) -> None:
                now = time.time()
                batches.append(len(batch["units"]))
                for unit in batch["units"]:
                    seen(unit.get("position"), now)

            console.on("unit_status", on_status, namespace="/console")
            console.on("unit_positions", on_positions, namespace="/console")
            if not args.floor:
                await console.connect(url, namespaces=["/console"], auth={"token": token}, transports=["websocket"])
            loop = asyncio.get_running_loop()
            replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

            def reader(proc: subprocess.Popen[str]) -> None:
                assert proc.stdout is not None
                for line in proc.stdout:
                    loop.call_soon_threadsafe(replies.put_nowait, json.loads(line))

            def tell(word: str) -> None:
                for proc in gens:
                    assert proc.stdin is not None
                    proc.stdin.write(word + "\n")
                    proc.stdin.flush()

            async def answers() -> list[dict[str, Any]]:
                return [await asyncio.wait_for(replies.get(), 60) for _ in gens]

            t_start = time.monotonic()
            c_start = cpu_s(server.pid)
            for f in token_files:
                proc = await asyncio.to_thread(
                    subprocess.Popen, [sys.executable, str(REPO / "bench" / "geo_units.py"), "--server", url,
                                       "--tokens", str(f), "--interval", str(args.interval),
                                       "--transport", "socketio" if args.floor else args.transport],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
                gens.append(proc)
                loop.run_in_executor(None, reader, proc)
            ready = [await asyncio.wait_for(replies.get(), args.connect_timeout) for _ in gens]
            assert sum(r["ready"] for r in ready) == args.units, ready
            connect_s = time.monotonic() - t_start
            connect_cpu = (cpu_s(server.pid) - c_start) / connect_s * 100
            tell("go")
            await asyncio.sleep(args.interval + args.warmup)
            latencies.clear()
            batches.clear()
            tell("mark")
            c0, g0, w0 = cpu_s(server.pid), sum(cpu_s(g.pid) for g in gens), time.monotonic()
            m0, b0, st0 = main_thread_cpu_s(server.pid), cpu_s(os.getpid()), machine_ticks()
            await asyncio.sleep(args.window)
            tell("report")
            elapsed = time.monotonic() - w0
            cpu = (cpu_s(server.pid) - c0) / elapsed * 100
            main_cpu = (main_thread_cpu_s(server.pid) - m0) / elapsed * 100
            bench_cpu = (cpu_s(os.getpid()) - b0) / elapsed * 100
            st1 = machine_ticks()
            total = sum(st1) - sum(st0)
            machine = {name: round((b - a) / total * 100, 1) for name, a, b in
                       zip(("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"), st0, st1,
                           strict=True)}
            gen_cpu = (sum(cpu_s(g.pid) for g in gens) - g0) / elapsed * 100
            window_lat = list(latencies)
            updates_per_s = len(window_lat) / elapsed
            events_per_s = len(batches) / elapsed
            reports = await answers()
            acked = sum(r["acked"] for r in reports)
            errors = sum(r["errors"] for r in reports)
            # Acknowledgement delay: the worst generator's percentiles (they share the load evenly).
            ack_p50 = max(r["ack_ms"]["p50"] for r in reports)
            ack_p99 = max(r["ack_ms"]["p99"] for r in reports)

            near: list[float] = []
            auth = {"Authorization": f"Bearer {token}"}
            rng = random.Random(2)
            for _ in range(0 if args.floor else 200):
                lat, lon = 39.9 + rng.uniform(-0.3, 0.3), 116.4 + rng.uniform(-0.3, 0.3)
                t0 = time.perf_counter()
                async with http.get(f"{url}/api/units/nearest?lat={lat}&lon={lon}&k=10", headers=auth) as r:
                    await r.read()
                near.append((time.perf_counter() - t0) * 1000)
        return {
            "units": args.units, "loadgens": args.loadgens, "connect_s": round(connect_s, 1),
            "server_cpu_connecting_pct": round(connect_cpu, 1),
            "window_s": args.window,
            "fixes_acked_per_s": round(acked / elapsed, 1),
            "loadgen_errors": errors,
            "fix_ack_ms": {"p50": ack_p50, "p99": ack_p99},
            "console_positions_per_s": round(updates_per_s, 1),
            "console_events_per_s": round(events_per_s, 1),
            "fix_to_console_ms": {"p50": round(pct(window_lat, 50), 1), "p99": round(pct(window_lat, 99), 1),
                                  "max": round(max(window_lat, default=float("nan")), 1), "n": len(window_lat)},
            "server_cpu_pct": round(cpu, 1),
            "server_loop_thread_cpu_pct": round(main_cpu, 1),
            "server_cpu_us_per_fix": round(cpu / 100 * 1e6 / max(1.0, acked / elapsed), 1),
            "loadgen_cpu_pct": round(gen_cpu, 1),
            "console_process_cpu_pct": round(bench_cpu, 1),
            "machine_pct": machine,
            "nearest_http_ms": {"p50": round(pct(near, 50), 2), "p99": round(pct(near, 99), 2)},
            "nearest_in_process_ms": None if args.floor else nearest_in_process(args.units),
            "server": "bare python-socketio (--floor)" if args.floor else "dispatch-server",
            "transport": "socketio" if args.floor else args.transport,
            "event_loop": args.event_loop, "storage": "postgresql" if args.storage_url else "sqlite",
        }
    finally:
        try:
            await console.disconnect()
        except Exception:
            pass
        for proc in gens:
            stop(proc, close_stdin=True, timeout=60)
        stop(server, close_stdin=args.floor)


def machine_ticks() -> list[int]:
    """The first eight fields of /proc/stat's ``cpu`` line: user nice system idle iowait irq softirq steal."""
    with open("/proc/stat", encoding="ascii") as f:
        return [int(v) for v in f.readline().split()[1:9]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--units", type=int, default=5000)
    p.add_argument("--loadgens", type=int, default=2)
    p.add_argument("--warmup", type=float, default=10.0)
    p.add_argument("--window", type=float, default=20.0)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between a unit's fixes")
    p.add_argument("--connect-timeout", type=float, default=600.0)
    p.add_argument("--transport", choices=("telemetry", "socketio"), default="telemetry",
                   help="how units send fixes: the telemetry channel (each unit also keeps its Socket.IO link "
                        "open), or Socket.IO 'positions' events (the baseline)")
    p.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop",
                   help="the server's server.event_loop (default: uvloop, the server's default)")
    p.add_argument("--floor", action="store_true",
                   help="load a bare python-socketio server instead (the Socket.IO stack's own cost per fix)")
    p.add_argument("--storage-url", default="", help="[storage] url of the server (default: SQLite files)")
    p.add_argument("--serve-floor", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help="default bench/results/geo.json (geo-floor.json with --floor)")
    args = p.parse_args()
    if args.serve_floor:
        serve_floor()
        return
    out = args.out or str(REPO / "bench" / "results" / ("geo-floor.json" if args.floor else "geo.json"))
    write_result(out, asyncio.run(run(args)))


if __name__ == "__main__":
    main()

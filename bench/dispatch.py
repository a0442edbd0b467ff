"""Dispatch benchmark: instruction round trip and broadcast with N connected units.

    python -m bench.dispatch [--units 1000] [--round-trips 200] [--broadcasts 3] [--out FILE]

Starts a real ``dispatch-server`` subprocess and a load-generator subprocess
(``bench/dispatch_units.py``) holding N Socket.IO units. Measures:
- round trip: ``POST /api/instructions`` to one unit → the unit's receipt confirmed by the server
  (``received`` answered, the instruction is ``delivered``), one at a time; p50 / p99;
- broadcast: one ``{"all": true}`` instruction → every unit's receipt confirmed; time to the last;
- server memory (RSS) per connected unit: (RSS with N units − RSS with none) / N;
- server CPU during the round-trip phase (baseline: the same server idle with N units).
Only 127.0.0.1 traffic; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import PASSWORD, REPO, cpu_s, pct, rss_kib, seed, start_server, stop, write_result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    data = work / "data"
    tokens = seed(data, [f"u{i:04d}" for i in range(args.units)])
    (work / "tokens.txt").write_text("\n".join(tokens) + "\n")
    cfg = work / "config.toml"
    # Every simulated unit connects from 127.0.0.1: lift the per-address connection cap.
    cfg.write_text(f'[storage]\ndata_dir = "{data}"\n[server]\nport = 0\nmax_connections_per_address = 1000000\n'
                   '[alerts]\nsweep_interval_s = 1.0\n')

    server, url = start_server(cfg)
    units: subprocess.Popen[str] | None = None
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/api/login", json={"username": "bench", "password": PASSWORD}) as r:
                token = (await r.json())["token"]
            auth = {"Authorization": f"Bearer {token}"}
            await asyncio.sleep(1.0)
            rss_idle = rss_kib(server.pid)

            units = await asyncio.to_thread(
                subprocess.Popen, [sys.executable, str(REPO / "bench" / "dispatch_units.py"), "--server", url,
                                   "--tokens", str(work / "tokens.txt")],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
            acks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            loop = asyncio.get_running_loop()
            ready = loop.create_future()

            def reader() -> None:
                assert units is not None and units.stdout is not None
                for line in units.stdout:
                    msg = json.loads(line)
                    if "ready" in msg:
                        loop.call_soon_threadsafe(ready.set_result, msg["ready"])
                    else:
                        loop.call_soon_threadsafe(acks.put_nowait, msg)

            loop.run_in_executor(None, reader)
            connected = await asyncio.wait_for(ready, 300)
            await asyncio.sleep(3.0)  # let presence updates settle
            rss_units = rss_kib(server.pid)

            # idle CPU with N units connected
            c0, w0 = cpu_s(server.pid), time.monotonic()
            await asyncio.sleep(5.0)
            idle_cpu = (cpu_s(server.pid) - c0) / (time.monotonic() - w0) * 100

            # round trips, one at a time
            rtts = []
            c0, w0 = cpu_s(server.pid), time.monotonic()
            for n in range(args.round_trips):
                unit_id = f"u{(n * 7919) % args.units:04d}"
                t0 = time.time()
                async with http.post(f"{url}/api/instructions", headers=auth,
                                     json={"unit": unit_id, "type": "text", "text": f"rt {n}", "ttl_s": 60}) as r:
                    iid = (await r.json())["id"]
                while True:
                    ack = await asyncio.wait_for(acks.get(), 10)
                    if ack["id"] == iid:
                        rtts.append((ack["t"] - t0) * 1000)
                        break
            rt_cpu = (cpu_s(server.pid) - c0) / (time.monotonic() - w0) * 100

            # broadcasts to all units
            broadcasts = []
            for b in range(args.broadcasts):
                t0 = time.time()
                async with http.post(f"{url}/api/instructions", headers=auth,
                                     json={"all": True, "type": "text", "text": f"broadcast {b}", "ttl_s": 60}) as r:
                    body = await r.json()
                    t_api = time.time()
                want = set(body["ids"])
                last = t0
                while want:
                    ack = await asyncio.wait_for(acks.get(), 30)
                    if ack["id"] in want:
                        want.discard(ack["id"])
                        last = max(last, ack["t"])
                broadcasts.append({"targets": len(body["ids"]), "api_ms": (t_api - t0) * 1000,
                                   "all_delivered_ms": (last - t0) * 1000})
                await asyncio.sleep(1.0)
        return {
            "units": args.units,
            "connected": connected,
            "round_trip_ms": {"n": len(rtts), "p50": round(statistics.median(rtts), 1), "p99": round(pct(rtts, 99), 1),
                              "max": round(max(rtts), 1)},
            "broadcast": broadcasts,
            "broadcast_all_delivered_ms_median": round(statistics.median(b["all_delivered_ms"] for b in broadcasts), 0),
            "server_rss_mib": {"idle": round(rss_idle / 1024, 1), "with_units": round(rss_units / 1024, 1)},
            "server_kib_per_unit": round((rss_units - rss_idle) / max(1, connected), 1),
            "server_cpu_pct": {"idle_with_units": round(idle_cpu, 1), "during_round_trips": round(rt_cpu, 1)},
        }
    finally:
        if units is not None:
            stop(units, close_stdin=True)
        stop(server)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--units", type=int, default=1000)
    p.add_argument("--round-trips", type=int, default=200)
    p.add_argument("--broadcasts", type=int, default=3)
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "dispatch.json"))
    args = p.parse_args()
    write_result(args.out, asyncio.run(run(args)))


if __name__ == "__main__":
    main()

"""Abuse benchmark: an operator's console while a stranger floods the server (issue #14, finding 9).

    python -m bench.abuse [--slow 2000] [--logins 120] [--login-concurrency 30] [--cap 200] [--out FILE]

Starts a real ``dispatch-server serve`` (the shipped timeouts: ``header_timeout_s`` 10,
``body_timeout_s`` 30; ``max_connections_per_address`` from ``--cap``). An operator on 127.0.0.2
calls ``GET /api/me`` back to back on one kept-alive connection:

1. baseline, no flood, ``--baseline-s`` seconds;
2. flood, from 127.0.0.1: ``--logins`` wrong-password logins, ``--login-concurrency`` at a time,
   and ``--slow`` slow connections opened at once (half dribble a request head, half a body that
   was declared 60,000 bytes long, one byte every ``--trickle-s``), until every slow connection has
   been closed by the server (or ``--limit-s``).

Reports ``/api/me`` p50 / p99 / max in both phases (target p99 < 100 ms during the flood), what
became of the slow connections (refused at once by the per-address cap, closed by the head or
body deadline; p50 and max of when), the logins' statuses, and the server's CPU.
Only loopback traffic; every wait is bounded; every process started is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import PASSWORD, REPO, cpu_s, pct, seed, start_server, stop, write_result
from tests.support.slow_clients import SLOW_BODY, SLOW_HEAD, Held, hold

OPERATOR_ADDRESS = "127.0.0.2"  # not the flooding address: the cap and the lockouts are per address


async def me_loop(url: str, token: str, stop_at: asyncio.Event, out: list[float]) -> None:
    connector = aiohttp.TCPConnector(local_addr=(OPERATOR_ADDRESS, 0), limit=1)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=connector) as http:
        while not stop_at.is_set():
            start = time.perf_counter()
            async with http.get(f"{url}/api/me", headers=headers) as r:
                await r.read()
                assert r.status == 200, r.status
            out.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.01)  # a request every 10 ms: far more than a console makes


async def bad_logins(url: str, n: int, concurrency: int) -> dict[str, int]:
    statuses: dict[str, int] = {}
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        async def one(i: int) -> None:
            name = "bench" if i % 2 else f"nobody{i}"  # the operator's own name, and unknown ones
            try:
                async with gate, http.post(f"{url}/api/login", json={"username": name, "password": f"guess-{i}"}) as r:
                    key = str(r.status)
            except aiohttp.ClientError:  # over the address's connection cap: closed before an answer
                key = "connection closed"
            statuses[key] = statuses.get(key, 0) + 1

        await asyncio.gather(*(one(i) for i in range(n)))
    return statuses


def summary(latencies: list[float]) -> dict[str, Any]:
    return {"requests": len(latencies), "p50_ms": round(pct(latencies, 50), 1), "p99_ms": round(pct(latencies, 99), 1),
            "max_ms": round(max(latencies), 1) if latencies else None}


def fate(held: list[Held]) -> dict[str, Any]:
    at_once = [h.closed_after_s is not None and h.closed_after_s < 1.0 and not h.received for h in held]
    closed = [h.closed_after_s for h, quick in zip(held, at_once, strict=True)
              if h.closed_after_s is not None and not quick]
    return {"connections": len(held), "refused_at_once": sum(at_once),
            "closed_by_server": len(closed), "still_open_at_limit": sum(h.closed_after_s is None for h in held),
            "answered_408": sum(h.status == 408 for h in held),
            "closed_after_s_p50": round(pct(closed, 50), 1) if closed else None,
            "closed_after_s_max": round(max(closed), 1) if closed else None}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-abuse-"))
    seed(work / "data", [])
    cfg = work / "config.toml"
    cfg.write_text(f'[storage]\ndata_dir = "{work / "data"}"\n[server]\nport = 0\n'
                   f"max_connections_per_address = {args.cap}\n")
    server, url = start_server(cfg)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/api/login", json={"username": "bench", "password": PASSWORD}) as r:
                token = (await r.json())["token"]

        baseline: list[float] = []
        done = asyncio.Event()
        loop_task = asyncio.create_task(me_loop(url, token, done, baseline))
        await asyncio.sleep(args.baseline_s)
        done.set()
        await loop_task

        during: list[float] = []
        done = asyncio.Event()
        cpu0, t0 = cpu_s(server.pid), time.monotonic()
        loop_task = asyncio.create_task(me_loop(url, token, done, during))
        half = args.slow // 2
        slow = [asyncio.create_task(hold(url, SLOW_HEAD, every_s=args.trickle_s, limit_s=args.limit_s))
                for _ in range(half)]
        slow += [asyncio.create_task(hold(url, SLOW_BODY, every_s=args.trickle_s, limit_s=args.limit_s))
                 for _ in range(args.slow - half)]
        logins = await bad_logins(url, args.logins, args.login_concurrency)
        held = await asyncio.gather(*slow)
        flood_s = time.monotonic() - t0
        cpu = (cpu_s(server.pid) - cpu0) / flood_s * 100
        done.set()
        await loop_task

        after: list[float] = []
        done = asyncio.Event()
        loop_task = asyncio.create_task(me_loop(url, token, done, after))
        await asyncio.sleep(2.0)
        done.set()
        await loop_task
        p99 = pct(during, 99)
        return {
            "bench": "abuse", "cap_per_address": args.cap, "slow_connections": args.slow,
            "bad_logins": args.logins, "login_concurrency": args.login_concurrency, "trickle_s": args.trickle_s,
            "me_baseline": summary(baseline), "me_during_flood": summary(during), "me_after_flood": summary(after),
            "flood_s": round(flood_s, 1), "server_cpu_pct_during_flood": round(cpu, 1),
            "slow_heads": fate(held[:half]), "slow_bodies": fate(held[half:]), "login_statuses": logins,
            "target_p99_ms": 100, "met": p99 < 100,
        }
    finally:
        stop(server)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slow", type=int, default=2000, help="slow connections (half heads, half bodies)")
    p.add_argument("--logins", type=int, default=120)
    p.add_argument("--login-concurrency", type=int, default=30)
    p.add_argument("--cap", type=int, default=200, help="server.max_connections_per_address")
    p.add_argument("--trickle-s", type=float, default=2.0, help="seconds between the slow clients' bytes")
    p.add_argument("--baseline-s", type=float, default=10.0)
    p.add_argument("--limit-s", type=float, default=90.0, help="the slow clients give up after this")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "abuse.json"))
    args = p.parse_args()
    write_result(args.out, asyncio.run(run(args)))


if __name__ == "__main__":
    main()

"""Load generator for bench/geo.py: N Socket.IO units each sending one GPS fix per second.

Each fix goes out as a ``positions`` batch of one (msgpack), its ``ts`` the wall-clock time of
sending, so the console side can measure fix-to-console latency. Reads ``unit_id token`` lines;
prints ``{"ready": n}`` when connected, then ``{"sent": n, "acked": n, "errors": n}`` every 5 s.
Runs until stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time

import msgpack
import socketio


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--tokens", required=True)
    p.add_argument("--interval", type=float, default=1.0)
    args = p.parse_args()
    pairs = [line.split() for line in open(args.tokens, encoding="utf-8") if line.strip()]
    stats = {"sent": 0, "acked": 0, "errors": 0}
    clients: list[socketio.AsyncClient] = []
    sem = asyncio.Semaphore(50)

    async def connect(unit_id: str, token: str) -> socketio.AsyncClient:
        client = socketio.AsyncClient(reconnection=True)
        async with sem:
            await client.connect(args.server, namespaces=["/unit"], auth={"unit_id": unit_id, "token": token},
                                 transports=["websocket"], wait_timeout=60)
        return client

    clients = list(await asyncio.gather(*(connect(u, t) for u, t in pairs)))
    print(json.dumps({"ready": len(clients)}), flush=True)
    stop = asyncio.Event()

    async def unit(i: int, client: socketio.AsyncClient) -> None:
        rng = random.Random(i)
        lat0, lon0 = 39.9 + rng.uniform(-0.2, 0.2), 116.4 + rng.uniform(-0.2, 0.2)
        await asyncio.sleep(rng.uniform(0, args.interval))  # spread the sends over the second
        k = 0
        while not stop.is_set():
            t = time.time()
            fix = {"lat": lat0 + 0.001 * math.sin(k / 30), "lon": lon0 + 0.001 * math.cos(k / 30), "ts": t}
            stats["sent"] += 1
            try:
                ack = await client.call("positions", msgpack.packb([fix]), namespace="/unit", timeout=10)
                stats["acked" if ack.get("ok") else "errors"] += 1
            except Exception:
                stats["errors"] += 1
            k += 1
            await asyncio.sleep(max(0.0, t + args.interval - time.time()))

    async def report() -> None:
        while not stop.is_set():
            await asyncio.sleep(5)
            print(json.dumps(stats), flush=True)

    tasks = [asyncio.create_task(unit(i, c)) for i, c in enumerate(clients)] + [asyncio.create_task(report())]
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())

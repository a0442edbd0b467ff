"""Load generator for bench/geo.py: N units on the Socket.IO wire, each sending one GPS fix a second.

Each unit behaves as ``field_client`` does at 1 Hz: it sends its fix as a ``positions`` batch of
one (msgpack, a binary Socket.IO event with an acknowledgement) and has at most one batch in
flight; a fix due while the previous one is unacknowledged waits for the acknowledgement. A fix's
``ts`` is the wall-clock time of sending, so the console side can measure fix-to-console latency.

Why not python-socketio's client: on the 2-core benchmark machine its per-event cost (about
0.25 ms of CPU per fix on the sending side) would take a whole core away from the server at
5,000 fixes/s. This speaks the same wire protocol by hand over aiohttp websockets (Engine.IO 4,
Socket.IO 5: ``40/unit,{auth}`` to join, ``451-/unit,<id>["positions",{placeholder}]`` plus one
binary frame per batch, ``43/unit,<id>[ack]`` back, and pongs to the server's pings), at a
fraction of the cost.

Reads ``unit_id token`` lines. Control over stdin/stdout, one JSON object or word per line:
prints ``{"ready": n}`` once every unit is connected; then waits for ``go`` before sending any
fix (so that connecting and loading are separate phases). ``mark`` starts a measuring window;
``report`` prints ``{"sent", "acked", "errors", "ack_ms": {"p50", "p99", "n"}}`` for the window.
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
from typing import Any

import aiohttp
import msgpack

NS = "/unit"
ACK_TIMEOUT_S = 10.0


class Stats:
    def __init__(self) -> None:
        self.sent = self.acked = self.errors = 0
        self.ack_ms: list[float] = []

    def report(self) -> dict[str, Any]:
        s = sorted(self.ack_ms)

        def pct(p: float) -> float:
            return round(s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))], 1) if s else float("nan")

        return {"sent": self.sent, "acked": self.acked, "errors": self.errors,
                "ack_ms": {"p50": pct(50), "p99": pct(99), "n": len(s)}}


class WireUnit:
    """One unit's websocket: joins ``/unit``, answers pings, matches acknowledgements to calls."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._next_id = 0
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._prefix = f"43{NS},"

    @classmethod
    async def connect(cls, http: aiohttp.ClientSession, server: str, unit_id: str, token: str) -> WireUnit:
        ws = await http.ws_connect(f"{server}/socket.io/?EIO=4&transport=websocket", autoping=True,
                                   max_msg_size=0, timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10))
        opened = await ws.receive_str(timeout=60)
        if not opened.startswith("0"):
            raise RuntimeError(f"unit {unit_id}: expected an Engine.IO open packet, got {opened[:80]!r}")
        await ws.send_str(f"40{NS}," + json.dumps({"unit_id": unit_id, "token": token}))
        while True:
            msg = await ws.receive_str(timeout=60)
            if msg == "2":
                await ws.send_str("3")
            elif msg.startswith(f"40{NS},"):
                return cls(ws)
            elif msg.startswith(f"44{NS},"):
                raise RuntimeError(f"unit {unit_id}: refused: {msg[len(NS) + 3:][:200]}")

    async def read(self) -> None:
        """Until the socket closes: pongs for pings, acknowledgements to their callers."""
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data: str = msg.data
            if data == "2":
                await self.ws.send_str("3")
            elif data.startswith(self._prefix):
                body = data[len(self._prefix):]
                bracket = body.index("[")
                fut = self._acks.pop(int(body[:bracket]), None)
                if fut is not None and not fut.done():
                    fut.set_result(json.loads(body[bracket:])[0])
        for fut in self._acks.values():
            if not fut.done():
                fut.set_exception(ConnectionError("socket closed"))

    async def call_binary(self, event: str, payload: bytes) -> Any:
        ack_id = self._next_id
        self._next_id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = fut
        await self.ws.send_str(f'451-{NS},{ack_id}["{event}",{{"_placeholder":true,"num":0}}]')
        await self.ws.send_bytes(payload)
        try:
            return await asyncio.wait_for(fut, ACK_TIMEOUT_S)
        finally:
            self._acks.pop(ack_id, None)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--tokens", required=True)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--connect-concurrency", type=int, default=50)
    args = p.parse_args()
    with open(args.tokens, encoding="utf-8") as f:
        pairs = [line.split() for line in f if line.strip()]
    stats = Stats()
    sem = asyncio.Semaphore(args.connect_concurrency)
    go = asyncio.Event()
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def connect(unit_id: str, token: str) -> WireUnit:
        async with sem:
            return await WireUnit.connect(http, args.server, unit_id, token)

    units = list(await asyncio.gather(*(connect(u, t) for u, t in pairs)))
    print(json.dumps({"ready": len(units)}), flush=True)

    async def send_fixes(i: int, unit: WireUnit) -> None:
        rng = random.Random(i)
        lat0, lon0 = 39.9 + rng.uniform(-0.2, 0.2), 116.4 + rng.uniform(-0.2, 0.2)
        await go.wait()
        await asyncio.sleep(rng.uniform(0, args.interval))  # spread the sends over the second
        k = 0
        while True:
            t = time.time()
            fix = {"lat": lat0 + 0.001 * math.sin(k / 30), "lon": lon0 + 0.001 * math.cos(k / 30), "ts": t}
            stats.sent += 1
            t0 = time.perf_counter()
            try:
                ack = await unit.call_binary("positions", msgpack.packb([fix]))
                if isinstance(ack, dict) and ack.get("ok"):
                    stats.acked += 1
                    stats.ack_ms.append((time.perf_counter() - t0) * 1000)
                else:
                    stats.errors += 1
            except (TimeoutError, ConnectionError, aiohttp.ClientError):
                stats.errors += 1
            k += 1
            await asyncio.sleep(max(0.0, t + args.interval - time.time()))

    tasks = [asyncio.create_task(u.read()) for u in units]
    tasks += [asyncio.create_task(send_fixes(i, u)) for i, u in enumerate(units)]
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if not line:
            break
        if line == "go":
            go.set()
        elif line == "mark":
            stats = Stats()
        elif line == "report":
            print(json.dumps(stats.report()), flush=True)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(u.ws.close() for u in units), return_exceptions=True)
    await http.close()


if __name__ == "__main__":
    asyncio.run(main())

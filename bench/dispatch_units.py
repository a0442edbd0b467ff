"""Load generator for bench/dispatch.py: N Socket.IO units that take instructions like the field client.

Each unit answers ``instructions_pending`` with ``sync`` then ``received``, and prints one JSON
line per instruction it got: ``{"id", "unit", "t"}`` (``t`` = time.time() when the server
confirmed delivery). Reads ``unit_id token`` lines from a file; prints ``{"ready": n}`` once all
are connected. Runs until stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import socketio


class Unit:
    def __init__(self, url: str, unit_id: str, token: str) -> None:
        self.url, self.unit_id, self.token = url, unit_id, token
        self.sio = socketio.AsyncClient(reconnection=True, reconnection_delay=0.5)
        self.after_seq = 0
        self._busy = asyncio.Lock()
        self.sio.on("instructions_pending", self._pending, namespace="/unit")

    async def connect(self) -> None:
        await self.sio.connect(self.url, namespaces=["/unit"], auth={"unit_id": self.unit_id, "token": self.token},
                               transports=["websocket"], wait_timeout=30)

    async def _pending(self, data: dict[str, Any]) -> None:
        async with self._busy:
            items = data.get("instructions") or []
            if not items or items[0]["seq"] != self.after_seq + 1:  # missed something: pull the outbox
                got = await self.sio.call("sync", {"after_seq": self.after_seq}, namespace="/unit", timeout=30)
                items = got.get("instructions", [])
            if not items:
                return
            ack = await self.sio.call("received", {"ids": [i["id"] for i in items]}, namespace="/unit", timeout=30)
            now = time.time()
            for iid in ack.get("delivered", []):
                print(json.dumps({"id": iid, "unit": self.unit_id, "t": now}), flush=True)
            self.after_seq = max(i["seq"] for i in items)


def read_pairs(path: str) -> list[list[str]]:
    """``unit_id token`` per line."""
    with open(path, encoding="utf-8") as f:
        return [line.split() for line in f if line.strip()]


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--tokens", required=True)
    p.add_argument("--concurrency", type=int, default=50)
    args = p.parse_args()
    pairs = await asyncio.to_thread(read_pairs, args.tokens)
    units = [Unit(args.server, u, t) for u, t in pairs]
    sem = asyncio.Semaphore(args.concurrency)

    async def connect(unit: Unit) -> None:
        async with sem:
            await unit.connect()

    await asyncio.gather(*(connect(u) for u in units))
    print(json.dumps({"ready": len(units)}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await asyncio.gather(*(u.sio.disconnect() for u in units), return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())

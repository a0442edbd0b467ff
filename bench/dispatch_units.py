"""Load generator for bench/dispatch.py: real field units, many on one event loop.

    python bench/dispatch_units.py --server URL [--server URL2 ...] --tokens FILE [--auto-ack]

Each unit is the field client's own instruction path, nothing else (no media, no GPS): a
:class:`field_client.link.UnitLink` (its own python-socketio client and websocket) whose
``instructions_pending`` goes to a :class:`field_client.inbox.InstructionInbox`, which takes the
pushed instructions (or ``sync``s after a gap), calls ``received`` and hands the ids the server
confirmed as delivered to an :class:`field_client.desk.OrderDesk`. The desk has no officer (the
order waits for nobody), or with ``--auto-ack`` an :class:`field_client.officer.AutoAck` whose
``acknowledged`` answers go out through the unit's :class:`field_client.answers.AnswerOutbox`,
as an unattended terminal does. On connect each unit pulls its outbox once, as ``FieldUnit`` does.
With several ``--server`` (the nodes of a cluster), the units are spread over them in turn.

The measured point: the moment the desk receives a delivered order (``OrderDesk.arrived``), which
the inbox calls right after the server's acknowledgement of ``received`` (the server committed the
instruction as ``delivered`` before answering). Time is ``time.monotonic()`` (CLOCK_MONOTONIC, the
same clock in every process of the machine).

Protocol, JSON lines. stdin: ``connect K`` connects this process's first K units (those already
connected stay), answered by ``{"connected": n, "failed": f, "lost": l, "s": seconds}``; end of
input disconnects every unit and exits. stdout, besides the answers: ``{"d": [[id, unit, t], ...]}``
for delivered orders, written at most once per loop iteration. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import uvloop  # noqa: E402

from field_client.answers import AnswerOutbox  # noqa: E402
from field_client.desk import OrderDesk  # noqa: E402
from field_client.errors import FieldClientError, LinkError  # noqa: E402
from field_client.inbox import InstructionInbox  # noqa: E402
from field_client.link import UnitLink  # noqa: E402
from field_client.machine_orders import MachineOrders  # noqa: E402
from field_client.officer import AutoAck  # noqa: E402
from field_client.orders import Order  # noqa: E402


class Reports:
    """Delivered orders, written to stdout as one line per loop iteration (not one per order:
    a broadcast delivers hundreds within a few milliseconds)."""

    def __init__(self) -> None:
        self._items: list[tuple[str, str, float]] = []

    def add(self, instruction_id: str, unit_id: str, t: float) -> None:
        if not self._items:
            asyncio.get_running_loop().call_soon(self._flush)
        self._items.append((instruction_id, unit_id, t))

    def _flush(self) -> None:
        items, self._items = self._items, []
        say({"d": items})


def say(msg: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


class NoMedia:
    """The unit's controls for machine orders (``MachineOrders``): no camera, no microphone.
    The benchmark sends text orders only; a machine order would be refused, not block."""

    has_camera = False
    has_microphone = False

    async def set_media(self, on: bool, timeout_s: float) -> bool:
        return False

    async def take_snapshot(self, order: Order) -> dict[str, Any]:
        raise FieldClientError("no camera in the benchmark")

    async def call_back(self, order: Order) -> None:
        raise FieldClientError("no microphone in the benchmark")


class TimedDesk(OrderDesk):
    """The field client's desk, noting when each delivered order reaches it."""

    def __init__(self, unit_id: str, answers: AnswerOutbox, auto_ack: bool, reports: Reports) -> None:
        super().__init__(unit_id, MachineOrders(unit_id, NoMedia()), answers, AutoAck(answers) if auto_ack else None)
        self._reports = reports

    async def arrived(self, order: Order) -> None:
        self._reports.add(order.id, self.unit_id, time.monotonic())
        await super().arrived(order)


class BenchUnit:
    def __init__(self, server: str, unit_id: str, token: str, auto_ack: bool, reports: Reports) -> None:
        self.unit_id = unit_id
        self.answers = AnswerOutbox(unit_id)
        self.desk = TimedDesk(unit_id, self.answers, auto_ack, reports)
        self.inbox = InstructionInbox(unit_id, None, self.desk)
        self.link = UnitLink(server, unit_id, token, connect_timeout_s=60.0, ack_timeout_s=30.0,
                             handlers={"instructions_pending": self.inbox.on_pending})
        self._auto_ack = auto_ack
        self._answering: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect, pull what is waiting (as ``FieldUnit`` does on every connect), send answers."""
        await self.link.connect()
        await self.inbox.pull(self.link)
        if self._auto_ack:
            self._answering = asyncio.create_task(self._answer(), name=f"{self.unit_id}-answers")

    async def _answer(self) -> None:
        try:
            await self.answers.drain(self.link)
        except LinkError as exc:
            print(f"unit {self.unit_id}: answers stopped: {exc}", file=sys.stderr)

    async def stop(self) -> None:
        if self._answering is not None:
            self._answering.cancel()
            await asyncio.gather(self._answering, return_exceptions=True)
        await self.desk.close()
        await self.link.close()


def read_pairs(path: str) -> list[tuple[str, str]]:
    """``unit_id token`` per line."""
    with open(path, encoding="utf-8") as f:
        return [(a, b) for a, b in (line.split() for line in f if line.strip())]


async def main(args: argparse.Namespace) -> None:
    pairs = read_pairs(args.tokens)
    reports = Reports()
    units = [BenchUnit(args.server[i % len(args.server)], u, t, args.auto_ack, reports)
             for i, (u, t) in enumerate(pairs)]
    tried = 0  # units[:tried] have been started
    connected: list[BenchUnit] = []
    failed = 0
    sem = asyncio.Semaphore(args.concurrency)
    loop = asyncio.get_running_loop()

    async def start(unit: BenchUnit) -> bool:
        async with sem:
            try:
                await asyncio.wait_for(unit.start(), timeout=120)
                return True
            except (FieldClientError, TimeoutError) as exc:
                print(f"unit {unit.unit_id}: {exc!r}", file=sys.stderr)
                await unit.link.close()
                return False

    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            word, _, arg = line.strip().partition(" ")
            if word != "connect":
                raise SystemExit(f"unknown command {line!r}")
            t0 = time.monotonic()
            todo = units[tried:int(arg)]
            tried += len(todo)
            gc.unfreeze()
            ok = await asyncio.gather(*(start(u) for u in todo))
            connected.extend(u for u, good in zip(todo, ok, strict=True) if good)
            failed += ok.count(False)
            gc.collect()
            gc.freeze()  # thousands of long-lived client objects: keep them out of later collections
            say({"connected": len(connected), "failed": failed,
                 "lost": sum(u.link.lost.is_set() for u in connected), "s": round(time.monotonic() - t0, 2)})
    finally:
        await asyncio.wait_for(asyncio.gather(*(u.stop() for u in connected), return_exceptions=True), timeout=60)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", required=True, action="append", help="a node's URL; repeat for several nodes")
    p.add_argument("--tokens", required=True, help="file of 'unit_id token' lines")
    p.add_argument("--auto-ack", action="store_true", help="acknowledge each order as an unattended terminal")
    p.add_argument("--concurrency", type=int, default=50, help="units connecting at the same time")
    gc.set_threshold(50_000, 20, 100)  # as the server does (dispatch_server/server.py)
    uvloop.run(main(p.parse_args()))

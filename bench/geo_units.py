"""Load generator for bench/geo.py: N units, each sending one GPS fix a second.

Each unit behaves as ``field_client`` does at 1 Hz: it keeps its Socket.IO ``/unit`` link open
and sends its fix as a batch of one with at most one batch in flight; a fix due while the
previous one is unacknowledged waits for the acknowledgement. With ``--transport telemetry``
(what ``field_client`` does) the batch goes over the unit's telemetry channel
(``/telemetry/{unit_id}``, :class:`TelemetryProtocol`); with ``--transport socketio`` as a
``positions`` event on the Socket.IO link (msgpack, a binary event with an acknowledgement).
A fix's ``ts`` is the wall-clock time of sending, so the console side can measure
fix-to-console latency.

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
import base64
import gc
import json
import math
import os
import random
import sys
import time
from typing import Any, cast
from urllib.parse import urlsplit

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


_deadlines: list[tuple[float, asyncio.Future[Any]]] = []


def expiring(fut: asyncio.Future[Any]) -> asyncio.Future[Any]:
    """``fut``, failed with TimeoutError by :func:`expire` once ACK_TIMEOUT_S has passed (one
    sweeper for all units instead of a ``wait_for`` timer per call: cheaper at 5,000 calls/s)."""
    _deadlines.append((time.monotonic() + ACK_TIMEOUT_S, fut))
    return fut


async def expire() -> None:
    while True:
        await asyncio.sleep(0.5)
        now = time.monotonic()
        keep = []
        for deadline, fut in _deadlines:
            if fut.done():
                continue
            if deadline <= now:
                fut.set_exception(TimeoutError())
            else:
                keep.append((deadline, fut))
        _deadlines[:] = keep


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
            return await expiring(fut)
        finally:
            self._acks.pop(ack_id, None)


class TelemetryProtocol(asyncio.Protocol):
    """The websocket of one unit's telemetry channel, framed by hand (RFC 6455, client side).

    aiohttp's client cost about 100 µs of CPU per fix here, a quarter of what the server spends,
    on the same two cores. This does only what the channel needs: the upgrade, masked binary
    frames out, unmasked binary and ping frames in (pongs back), replies matched by ``seq``.
    The mask key is all zeros (so the payload goes out as is): RFC 6455 wants it unpredictable,
    which protects browsers' intermediaries, not this generator; servers cannot tell.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buf = bytearray()
        self._seq = 0
        self._acks: dict[int, asyncio.Future[Any]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport has asyncio.Transport's methods without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self.upgraded.done():
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buf[:end])
            del self._buf[:end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(RuntimeError(f"upgrade refused: {head[:200]!r}"))
                return
            self.upgraded.set_result(None)
        buf = self._buf
        while len(buf) >= 2:
            opcode, n, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, at = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, at = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < at + n:
                return
            payload = bytes(buf[at:at + n])
            del buf[:at + n]
            if opcode == 0x2:
                reply = msgpack.unpackb(payload)
                fut = self._acks.pop(reply.get("seq"), None)
                if fut is not None and not fut.done():
                    fut.set_result(reply)
            elif opcode == 0x9:  # ping: pong with the same payload
                self._send(0xA, payload)
            elif opcode == 0x8:  # close
                assert self.transport is not None
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in [*self._acks.values(), self.upgraded]:
            if not fut.done():
                fut.set_exception(ConnectionError("socket closed"))
        if not self.closed.done():
            self.closed.set_result(None)

    def _send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        else:
            head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        assert self.transport is not None
        self.transport.write(head + b"\0\0\0\0" + payload)

    async def send(self, fixes: list[dict[str, Any]]) -> Any:
        seq = self._seq
        self._seq += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acks[seq] = fut
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("socket closed")
        self._send(0x2, msgpack.packb({"seq": seq, "fixes": fixes}))
        try:
            return await expiring(fut)
        finally:
            self._acks.pop(seq, None)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._send(0x8, (1000).to_bytes(2, "big"))
            self.transport.close()

    @classmethod
    async def connect(cls, server: str, unit_id: str, token: str) -> TelemetryProtocol:
        url = urlsplit(server)
        loop = asyncio.get_running_loop()
        if url.hostname is None or url.port is None:
            raise ValueError(f"--server must be http://HOST:PORT, got {server!r}")
        _, proto = await loop.create_connection(cls, url.hostname, url.port)
        key = base64.b64encode(os.urandom(16)).decode()
        assert proto.transport is not None
        proto.transport.write((f"GET /telemetry/{unit_id} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                               f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                               f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
        await asyncio.wait_for(proto.upgraded, 60)
        return proto


def read_pairs(path: str) -> list[list[str]]:
    """``unit_id token`` per line."""
    with open(path, encoding="utf-8") as f:
        return [line.split() for line in f if line.strip()]


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--tokens", required=True)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--connect-concurrency", type=int, default=50)
    p.add_argument("--transport", choices=("socketio", "telemetry"), default="socketio",
                   help="send fixes as Socket.IO 'positions' events, or over the telemetry channel "
                        "(each unit then also keeps its Socket.IO link open, as field_client does)")
    args = p.parse_args()
    pairs = await asyncio.to_thread(read_pairs, args.tokens)
    stats = Stats()
    sem = asyncio.Semaphore(args.connect_concurrency)
    go = asyncio.Event()
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def connect(unit_id: str, token: str) -> tuple[WireUnit, TelemetryProtocol | None]:
        async with sem:
            link = await WireUnit.connect(http, args.server, unit_id, token)
            tel = (await TelemetryProtocol.connect(args.server, unit_id, token)
                   if args.transport == "telemetry" else None)
            return link, tel

    pairs_open = list(await asyncio.gather(*(connect(u, t) for u, t in pairs)))
    units = [u for u, _ in pairs_open]
    channels = [t for _, t in pairs_open if t is not None]
    print(json.dumps({"ready": len(units)}), flush=True)

    async def send_fixes(i: int, unit: WireUnit, tel: TelemetryProtocol | None) -> None:
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
                if tel is not None:
                    ack = await tel.send([fix])
                else:
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

    tasks = [asyncio.create_task(expire())]
    tasks += [asyncio.create_task(u.read()) for u in units]
    tasks += [asyncio.create_task(send_fixes(i, u, t)) for i, (u, t) in enumerate(pairs_open)]
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
    for channel in channels:
        channel.close()
    await asyncio.gather(*(u.ws.close() for u in units), return_exceptions=True)
    await http.close()


if __name__ == "__main__":
    gc.set_threshold(50_000, 20, 100)  # thousands of sockets: as the server does (dispatch_server/server.py)
    try:  # the load generator only emulates 5,000 devices: the cheaper its loop, the more CPU is left to the server
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())

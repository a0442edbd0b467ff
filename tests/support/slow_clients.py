"""Strangers who hold connections (issue #14, finding 9): raw TCP clients that send a request head
or a body a byte at a time, for the tests and ``bench/abuse.py``.

The trickle is the attacker's behaviour, not a wait of the test: each client sends one more byte
every ``every_s`` until the server closes the connection, and reports when that happened.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

SLOW_HEAD = b"GET /api/me HTTP/1.1\r\nHost: dispatch\r\nX-Slow: "  # never finishes the header line
SLOW_BODY = (b"POST /api/login HTTP/1.1\r\nHost: dispatch\r\nContent-Type: application/json\r\n"
             b"Content-Length: 60000\r\n\r\n{\"username\": \"")  # declares 60,000 bytes, sends a few


@dataclass
class Held:
    """What became of one slow connection."""

    closed_after_s: float | None  # when the server closed it; None: still open at the client's limit
    received: bytes  # what the server said before closing (a 408 for a slow body, nothing for a head)
    refused: bool = False  # closed before the first trickled byte went out (e.g. over the per-address cap)

    @property
    def status(self) -> int | None:
        if not self.received.startswith(b"HTTP/1.1 "):
            return None
        return int(self.received[9:12])


async def hold(url: str, first: bytes, *, every_s: float, limit_s: float, local_address: str | None = None,
               opened: asyncio.Event | None = None) -> Held:
    """Open a connection to ``url``'s host, send ``first``, then one byte every ``every_s`` until the
    server closes the connection or ``limit_s`` passes; ``opened`` is set once connected."""
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    reader, writer = await asyncio.open_connection(
        parts.hostname, parts.port, local_addr=(local_address, 0) if local_address else None)
    start = time.monotonic()
    trickled = 0
    writer.write(first)

    async def trickle() -> None:
        nonlocal trickled
        try:
            while True:
                await asyncio.sleep(every_s)
                writer.write(b"a")
                await writer.drain()
                trickled += 1
        except (ConnectionError, RuntimeError):  # closed under us: the server has spoken
            return

    if opened is not None:
        opened.set()
    feeder = asyncio.create_task(trickle())
    received = b""
    closed: float | None = None
    try:
        async with asyncio.timeout(limit_s):
            while chunk := await reader.read(65536):
                received += chunk
        closed = time.monotonic() - start
    except ConnectionResetError:
        closed = time.monotonic() - start
    except TimeoutError:
        pass
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass
    return Held(closed, received, refused=closed is not None and trickled == 0 and not received)

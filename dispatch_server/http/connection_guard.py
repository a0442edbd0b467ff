"""What a connection may hold before it has said what it wants (issue #14, finding 9).

aiohttp waits for a request head and a request body for as long as a client cares to send them
(its keep-alive timer, 3,630 s by default, was the only bound): 1,000 connections sending a header
byte now and then, and 1,000 sending a body byte now and then, were all still held after 90 s.
Here, for every connection of the server:

- **Head**: the first request head must be complete within ``server.header_timeout_s`` of the
  connection opening, or the connection is closed. A kept-alive connection's next head must be
  complete within ``server.idle_timeout_s`` of the previous response: that is aiohttp's keep-alive
  timer (it closes a connection still waiting for a head), armed with that value.
- **Body**: a body that has not fully arrived :func:`body_deadline_s` (plus :data:`BACKSTOP_GRACE_S`)
  after its head is cancelled with its connection. The server's own handlers read bodies through
  :func:`dispatch_server.http.request.read_body`, which answers ``408 body_timeout`` a little
  earlier; this is the backstop for whatever else reads a body (Engine.IO's polling POSTs).
- **Count**: at most ``server.max_connections_per_address`` TCP connections at once from one peer
  address, counting every connection (HTTP, websocket, idle); a further one is closed as soon as it
  opens. Trusted proxies (``server.trusted_proxies``) are exempt: one proxy carries many clients,
  and which client a connection carries is only known from its head, which a held connection never
  sends. The proxy enforces its own per-client limits (docs/security.md).
- **Upgrades**: once its head has arrived a websocket (Socket.IO, ``/telemetry/``) has no body and
  no head timer; its own heartbeat (Engine.IO pings, ``geo.telemetry_heartbeat_s``) decides.

Where this reaches into aiohttp (fenced here; ``tests/dispatch_server/test_connection_guard.py``
pins the behaviour, update both when aiohttp changes): :class:`GuardedRunner` is an ``AppRunner``
whose low-level ``web.Server`` is a :class:`GuardedServer`, built from the one aiohttp built
(``Server._kwargs``: the request handlers' arguments). The server hears of each connection through
``Server.connection_made`` / ``connection_lost`` (which every ``RequestHandler`` calls) and of each
request head through ``Server.request_factory``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader

from ..appkeys import GUARD_STATS, SETTINGS
from ..config import Settings
from .client_address import TrustedProxies, trusted_proxies
from .guard_stats import GuardStats

logger = logging.getLogger(__name__)

MIN_BODY_RATE = 32 * 1024  # bytes/s every body may take beyond body_timeout_s: a poor 4G uplink
BACKSTOP_GRACE_S = 5.0  # read_body answers 408 first; the backstop only meets what nobody reads in time


def body_deadline_s(timeout_s: float, size: int) -> float:
    """Seconds a body of ``size`` bytes may take: ``timeout_s``, plus 1 s per 32 KiB (a 5 MiB still
    from a unit gets 160 s more; a JSON body of 64 KiB, 2 s)."""
    return timeout_s + max(0, size) / MIN_BODY_RATE


@dataclass(frozen=True)
class GuardLimits:
    header_timeout_s: float
    idle_timeout_s: float
    body_timeout_s: float
    max_per_address: int
    largest_body: int  # the largest body any route or Engine.IO accepts: bounds the backstop's deadline
    proxies: TrustedProxies

    @classmethod
    def of(cls, settings: Settings) -> GuardLimits:
        s = settings.server
        largest = max(s.max_message_bytes, s.max_sdp_bytes, settings.archive.max_snapshot_bytes,
                      1_000_000, 4 * s.max_message_bytes)  # the last two: Engine.IO's (sio/server.py)
        return cls(s.header_timeout_s, s.idle_timeout_s, s.body_timeout_s, s.max_connections_per_address,
                   largest, trusted_proxies(s.trusted_proxies))


class _Connection:
    __slots__ = ("address", "head_timer", "body_timer")

    def __init__(self, address: str | None, head_timer: asyncio.TimerHandle) -> None:
        self.address = address  # None: not counted (a trusted proxy, a unix socket)
        self.head_timer: asyncio.TimerHandle | None = head_timer
        self.body_timer: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        for timer in (self.head_timer, self.body_timer):
            if timer is not None:
                timer.cancel()
        self.head_timer = self.body_timer = None


class GuardedServer(web.Server):
    """aiohttp's low-level server, with the head and body deadlines and the per-address cap."""

    def __init__(self, handler: Any, *, limits: GuardLimits, stats: GuardStats, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.limits = limits
        self.stats = stats
        self._per_address: Counter[str] = Counter()
        self._open: dict[web.RequestHandler, _Connection] = {}
        self._plain_request = self.request_factory
        self.request_factory = self._request

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, (tuple, list)) and peer else None
        if address is not None and self.limits.proxies.trusts(address):
            address = None
        if address is not None and self._per_address[address] >= self.limits.max_per_address:
            self.stats.refused += 1
            if self.stats.refused % 1000 == 1:  # one line per thousand, not a line per connection of a flood
                logger.warning("%s has %d connections open: refusing more (%d refused so far)",
                               address, self._per_address[address], self.stats.refused)
            # Closed right after this handler has started its loop (closing it now would run
            # connection_lost before that loop's first step, which then finds no server).
            asyncio.get_running_loop().call_soon(handler.force_close)
            return
        super().connection_made(handler, transport)
        if address is not None:
            self._per_address[address] += 1
        timer = asyncio.get_running_loop().call_later(self.limits.header_timeout_s, self._head_late, handler)
        self._open[handler] = _Connection(address, timer)
        self.stats.open = len(self._open)

    def connection_lost(self, handler: web.RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        conn = self._open.pop(handler, None)
        if conn is None:
            return
        conn.cancel()
        self.stats.open = len(self._open)
        if conn.address is not None:
            self._per_address[conn.address] -= 1
            if self._per_address[conn.address] <= 0:
                del self._per_address[conn.address]

    def connections_of(self, address: str) -> int:
        """Connections open now from ``address`` that count against its cap."""
        return self._per_address.get(address, 0)

    def _request(self, message: RawRequestMessage, payload: StreamReader, protocol: web.RequestHandler,
                 writer: AbstractStreamWriter, task: asyncio.Task[None]) -> web.BaseRequest:
        """A request head has arrived: the head timer is off; a body gets its deadline."""
        request = self._plain_request(message, payload, protocol, writer, task)
        conn = self._open.get(protocol)
        if conn is None:
            return request
        if conn.head_timer is not None:
            conn.head_timer.cancel()
            conn.head_timer = None
        if conn.body_timer is not None:
            conn.body_timer.cancel()
            conn.body_timer = None
        if not payload.is_eof():
            declared = request.content_length
            size = min(self.limits.largest_body, self.limits.largest_body if declared is None else declared)
            timer = asyncio.get_running_loop().call_later(
                body_deadline_s(self.limits.body_timeout_s, size) + BACKSTOP_GRACE_S, self._body_late, protocol,
                request)
            conn.body_timer = timer
            payload.on_eof(timer.cancel)
        return request

    def _head_late(self, handler: web.RequestHandler) -> None:
        conn = self._open.get(handler)
        if conn is None or conn.head_timer is None:
            return
        conn.head_timer = None
        self.stats.head_timeouts += 1
        logger.debug("closing a connection without a request head after %.1f s", self.limits.header_timeout_s)
        handler.force_close()

    def _body_late(self, handler: web.RequestHandler, request: web.BaseRequest) -> None:
        conn = self._open.get(handler)
        if conn is None or request.content.is_eof():
            return
        conn.body_timer = None
        self.stats.body_timeouts += 1
        logger.debug("closing a connection whose body to %s %s is late", request.method, request.path)
        # Cancel the connection's task (what aiohttp does on a disconnect with handler_cancellation):
        # the reader ends with CancelledError instead of a reset that would be logged as a failure.
        task = request.task
        if task is not None and not task.done():
            task.cancel()
        handler.force_close()


class GuardedRunner(web.AppRunner):
    """``web.AppRunner`` for the application ``create_app`` built (limits from its settings); every
    way the server is started (``dispatch-server serve``, the tests' servers) runs through it."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        self.limits = GuardLimits.of(app[SETTINGS])
        self.stats = app[GUARD_STATS]  # create_app made it: /api/health reports it
        kwargs.setdefault("keepalive_timeout", self.limits.idle_timeout_s)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # starts the app and builds aiohttp's server for it
        return GuardedServer(plain.request_handler, limits=self.limits, stats=self.stats,
                             request_factory=plain.request_factory,
                             handler_cancellation=plain.handler_cancellation, loop=asyncio.get_running_loop(),
                             **plain._kwargs)

    @property
    def guard(self) -> GuardedServer:
        server = self.server
        assert isinstance(server, GuardedServer), "the runner is not set up"
        return server

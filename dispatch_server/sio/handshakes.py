"""Engine.IO sessions that join no namespace (issue #14, finding 9).

An Engine.IO handshake needs no credentials: authentication happens when the client joins
``/unit`` or ``/console``. A client that completes the handshake and never joins (or stays after
its namespace was closed, e.g. revoked) kept the session — and for a websocket its connection —
for as long as it answered pings: 2,000 such sockets were held for 60 s and more. Here:

- a session that has joined no namespace for ``server.handshake_timeout_s`` is closed (checked
  every quarter of that, so it goes within 1.25× the timeout);
- at most ``server.max_connections_per_address`` such sessions at once per client address (the
  client a trusted proxy names in ``X-Forwarded-For``, else the peer): a further handshake is
  refused with Engine.IO's 401. Polling sessions hold no connection between requests, so the
  connection guard's cap does not see them; this one does.

Hooks into python-socketio through its attributes: the Engine.IO ``connect`` handler
(``sio.eio.on``), ``sio.eio.sockets`` (and a socket's ``close(wait=False)``, as Engine.IO's own ping
timeout uses it), ``sio.environ`` and ``sio.manager.sid_from_eio_sid``; tests/dispatch_server/
test_handshakes.py pins the behaviour.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any, Callable

import socketio

from ..config import ServerConfig
from ..http.client_address import trusted_proxies

logger = logging.getLogger(__name__)


class Handshakes:
    def __init__(self, sio: socketio.AsyncServer, namespaces: list[str], limits: ServerConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sio = sio
        self._namespaces = namespaces
        self._timeout_s = limits.handshake_timeout_s
        self._cap = limits.max_connections_per_address
        self._proxies = trusted_proxies(limits.trusted_proxies)
        self._clock = clock
        self._unattached: dict[str, tuple[float, str]] = {}  # eio sid -> (since, client address)
        self._per_address: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self.closed = 0  # sessions closed for joining no namespace in time
        self.refused = 0  # handshakes refused: their address held the cap of such sessions
        self._inner = sio.eio.handlers["connect"]
        sio.eio.on("connect", self._connected)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sio-handshakes")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def unattached(self) -> int:
        return len(self._unattached)

    async def _connected(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        address = self._address(environ)
        if self._per_address[address] >= self._cap:
            self.refused += 1
            if self.refused % 1000 == 1:
                logger.warning("%s holds %d Socket.IO handshakes without a namespace: refusing more (%d so far)",
                               address, self._per_address[address], self.refused)
            return False
        result = await self._inner(eio_sid, environ)
        if result is not False:
            self._watch(eio_sid, address)
        return result

    def _address(self, environ: dict[str, Any]) -> str:
        request = environ.get("aiohttp.request")
        if request is None:
            return "unknown"
        return self._proxies.client(request.remote or "unknown", request.headers.get("X-Forwarded-For", ""))

    def _watch(self, eio_sid: str, address: str) -> None:
        if eio_sid not in self._unattached:
            self._unattached[eio_sid] = (self._clock(), address)
            self._per_address[address] += 1

    def _forget(self, eio_sid: str) -> None:
        _, address = self._unattached.pop(eio_sid)
        self._per_address[address] -= 1
        if self._per_address[address] <= 0:
            del self._per_address[address]

    def _joined(self, eio_sid: str) -> bool:
        manager = self._sio.manager
        return any(manager.sid_from_eio_sid(eio_sid, ns) is not None for ns in self._namespaces)

    async def sweep(self) -> int:
        """Close the sessions past their time; start the clock of those that left every namespace.
        Returns how many were closed."""
        sockets = self._sio.eio.sockets
        now = self._clock()
        late = []
        for eio_sid, (since, _) in list(self._unattached.items()):
            if eio_sid not in sockets or self._joined(eio_sid):
                self._forget(eio_sid)
            elif now - since >= self._timeout_s:
                self._forget(eio_sid)
                late.append(eio_sid)
        for eio_sid in list(sockets):  # a session whose namespaces have all closed is a stranger's again
            if eio_sid not in self._unattached and eio_sid not in late and not self._joined(eio_sid):
                self._watch(eio_sid, self._address(self._sio.environ.get(eio_sid, {})))
        for eio_sid in late:
            self.closed += 1
            await self._close(eio_sid)
        if late:
            logger.info("closed %d Socket.IO connections that joined no namespace in %.0f s (%d so far)",
                        len(late), self._timeout_s, self.closed)
        return len(late)

    async def _close(self, eio_sid: str) -> None:
        """Close one session now, whatever its client does. ``eio.disconnect`` would wait until the
        client has read Engine.IO's close packet (a client that never polls or reads again held the
        sweep), and a websocket would stay open until the client answered or 45 s passed."""
        eio = self._sio.eio
        socket = eio.sockets.get(eio_sid)
        if socket is None:
            return
        request = self._sio.environ.get(eio_sid, {}).get("aiohttp.request")
        if socket.upgraded and request is not None and request.transport is not None:
            request.transport.close()  # the websocket's own connection (a polling session has none)
        await socket.close(wait=False, abort=bool(socket.upgraded), reason=eio.reason.SERVER_DISCONNECT)
        eio.sockets.pop(eio_sid, None)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._timeout_s / 4)
            try:
                await self.sweep()
            except Exception:
                logger.exception("Socket.IO handshake sweep failed")

"""The Socket.IO server of a node: one process alone, or one of several sharing Redis."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import socketio

from ..config import Settings
from .packet import Packet

logger = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT_S = 5.0


NAMESPACES = ["/unit", "/console"]  # connections to any other namespace (also "/") are refused


def origin_check(extra: tuple[str, ...]) -> Callable[[str | None, dict[str, Any]], bool]:
    """A browser may connect only from the server's own origin (or one of ``extra``); clients
    that send no ``Origin`` (field units, scripts) are not browsers and are let through to
    authenticate. (python-socketio reads an empty list as "no check at all".)"""

    def allowed(origin: str | None, environ: dict[str, Any]) -> bool:
        if origin is None:
            return True
        scheme = environ.get("wsgi.url_scheme", "http")
        return origin == f"{scheme}://{environ.get('HTTP_HOST', '')}" or origin in extra

    return allowed


def build_sio(settings: Settings) -> socketio.AsyncServer:
    manager = socketio.AsyncRedisManager(settings.redis.url) if settings.redis.url else None
    return socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        serializer=Packet,  # skips the binary search of TextOnly payloads
        namespaces=NAMESPACES,
        cors_allowed_origins=origin_check(settings.server.allowed_origins),
        # Engine.IO drops a connection whose packet exceeds this; events between the two limits
        # get a clear "too_large" error ack and the connection stays up (see events.py).
        max_http_buffer_size=max(1_000_000, 4 * settings.server.max_message_bytes),
        logger=False,
        engineio_logger=False,
    )


class SioLifetime:
    """Starts the Redis listener with the node (not at the first local connection, so events and
    calls from other nodes reach this node's clients from the start) and stops it; at shutdown
    closes every connection so units reconnect elsewhere, or here after a restart."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio
        self._manager = sio.manager if isinstance(sio.manager, socketio.AsyncRedisManager) else None

    async def start(self) -> None:
        if self._manager is not None:
            self._sio.manager_initialized = True
            self._manager.initialize()

    async def close(self) -> None:
        if self._manager is not None:
            listener = getattr(self._manager, "thread", None)
            if listener is not None:
                listener.cancel()

    async def shutdown(self) -> None:
        """Before aiohttp waits for open connections: close every Socket.IO connection, so no
        websocket holds up the stop (aiohttp would wait for each handler to return), then stop
        Socket.IO's background tasks. ``AsyncServer.shutdown`` alone closes no connection."""
        try:
            async with asyncio.timeout(SHUTDOWN_TIMEOUT_S):
                if self._sio.eio.sockets:
                    await self._sio.eio.disconnect()  # every client, at once
                await self._sio.shutdown()
        except Exception as exc:
            logger.warning("Socket.IO shutdown incomplete: %r", exc)

"""The composition root: ``create_app(settings)`` builds and wires every part, in one place.

Lifetimes follow aiohttp ``cleanup_ctx`` in dependency order: store → presence → live service
(relay) → Socket.IO manager → demo units. Shutdown runs them backwards: demo units stop, the
live service drains (refuses new sessions, ends every peer connection), then presence and store.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import socketio
from aiohttp import web

from media import passthrough
from media.relay import Relay, RelayConfig

from . import http_api, whip
from .appkeys import AUTH, LIVE, ROSTER, SETTINGS, SIO, STORE
from .auth import Authenticator
from .config import Settings
from .errors import DispatchError
from .live import LiveService
from .presence import MemoryPresence, PresenceStore, RedisPresence
from .roster import Roster
from .sio_console import OPERATORS_ROOM, ConsoleNamespace
from .sio_unit import UnitNamespace
from .store import Store

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
CONSOLE_DIR = REPO_ROOT / "console"
SIO_CLIENT_JS = CONSOLE_DIR / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "media-src 'self' blob: mediastream:; connect-src 'self' ws: wss:; frame-ancestors 'none'"
)


def node_id(settings: Settings) -> str:
    return settings.server.node_id or f"{socket.gethostname()}-{os.getpid()}"


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        resp = await handler(request)
    except DispatchError as exc:
        if exc.status >= 500 or exc.status == 401:
            logger.info("%s %s: %s %s", request.method, request.path, exc.status, exc.message)
        return web.json_response(exc.payload(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        code = exc.reason.lower().replace(" ", "_")
        return web.json_response(
            {"error": {"code": code, "message": f"{exc.reason}: {request.method} {request.path}"}},
            status=exc.status,
            headers={k: v for k, v in exc.headers.items() if k in ("Allow",)},
        )
    if request.path.startswith(("/api/", "/whip/", "/whep/")):
        resp.headers.setdefault("Cache-Control", "no-store")
    return resp


@web.middleware
async def headers_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    resp = await handler(request)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    if resp.content_type == "text/html":
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Frame-Options", "DENY")
    return resp


def _static_routes(app: web.Application) -> None:
    static = CONSOLE_DIR / "static"

    async def console_page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(static / "index.html")

    async def field_page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(static / "field.html")

    async def sio_client(request: web.Request) -> web.StreamResponse:
        if not SIO_CLIENT_JS.is_file():
            raise DispatchError(
                "the Socket.IO browser client is not installed: run 'make install' (npm ci in console/)",
                code="console_not_installed",
            )
        return web.FileResponse(SIO_CLIENT_JS)

    app.router.add_get("/", console_page)
    app.router.add_get("/field", field_page)
    app.router.add_get("/vendor/socket.io.min.js", sio_client)
    app.router.add_static("/static/", static, follow_symlinks=False)


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """Build the whole server for ``settings``. Nothing starts until the app runs."""
    passthrough.install()  # this process forwards media, it never decodes it
    app = web.Application(
        middlewares=[headers_middleware, errors_middleware],
        client_max_size=max(settings.server.max_message_bytes, settings.server.max_sdp_bytes),
    )
    node = node_id(settings)
    app[SETTINGS] = settings
    store = Store(settings.data_dir)
    app[STORE] = store
    app[AUTH] = Authenticator(store, settings.auth.session_ttl_s, clock)

    manager = socketio.AsyncRedisManager(settings.redis.url) if settings.redis.url else None
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        cors_allowed_origins=[],  # same origin only
        # Engine.IO drops a connection whose packet exceeds this; events between the two limits
        # get a clear "too_large" error ack and the connection stays up (see sio_events.py).
        max_http_buffer_size=max(1_000_000, 4 * settings.server.max_message_bytes),
        logger=False,
        engineio_logger=False,
    )
    sio.attach(app)
    app[SIO] = sio

    presence: PresenceStore = (
        RedisPresence(settings.redis.url, node) if settings.redis.url else MemoryPresence(node)
    )

    async def emit_status(unit: dict[str, Any]) -> None:
        await sio.emit("unit_status", unit, room=OPERATORS_ROOM, namespace="/console")

    async def emit_viewer_closed(info: dict[str, Any]) -> None:
        await sio.emit("viewer_closed", info, room=OPERATORS_ROOM, namespace="/console")

    roster = Roster(store, presence, emit_status, clock)
    app[ROSTER] = roster
    relay = Relay(
        RelayConfig(
            pli_min_interval_s=settings.media.pli_min_interval_s,
            keyframe_interval_s=settings.media.keyframe_interval_s,
            viewer_queue_frames=settings.media.viewer_queue_frames,
        )
    )
    live = LiveService(store, relay, roster, settings.media, node, emit_viewer_closed)
    app[LIVE] = live
    unit_ns = UnitNamespace(app[AUTH], roster, live, settings.server, clock)
    sio.register_namespace(unit_ns)
    sio.register_namespace(ConsoleNamespace(app[AUTH], roster, live, settings.server))

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        store.close()

    async def presence_ctx(app: web.Application) -> AsyncIterator[None]:
        if isinstance(presence, RedisPresence):
            await presence.start()
        # Units this node knew as connected/publishing before a crash are not any more.
        for unit_id, p in (await presence.all()).items():
            if p.node == node and p.online:
                await presence.update(unit_id, connected=False, publishing=False)
        yield
        for unit_id in list(unit_ns.connections):
            await presence.update(unit_id, connected=False)
        await presence.close()

    async def live_ctx(app: web.Application) -> AsyncIterator[None]:
        live.start()
        yield
        await live.close()

    async def sio_ctx(app: web.Application) -> AsyncIterator[None]:
        if manager is not None:
            # Start the Redis listener now, not at the first local connection, so events and
            # calls from other nodes reach this node's clients from the start.
            sio.manager_initialized = True
            manager.initialize()
        yield
        if manager is not None:
            listener = getattr(manager, "thread", None)
            if listener is not None:
                listener.cancel()

    app.cleanup_ctx.extend([store_ctx, presence_ctx, live_ctx, sio_ctx])

    app.router.add_routes(http_api.routes)
    app.router.add_routes(whip.routes)
    _static_routes(app)
    logger.info("node %s configured (redis: %s)", node, "on" if settings.redis.url else "off")
    return app

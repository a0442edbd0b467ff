"""The composition root: ``create_app(settings)`` builds and wires every part, in one place.

Lifetimes follow aiohttp ``cleanup_ctx`` in dependency order: store → presence → live service
(relay) → Socket.IO manager → demo units. Shutdown runs them backwards: demo units stop, the
live service drains (refuses new sessions, ends every peer connection), then presence and store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import socketio
from aiohttp import web

from media import passthrough
from geo.gpx import track_geojson
from geo.track import SqliteTrackStore
from media.relay import Relay, RelayConfig
from recordings.archive import ActionContext, ArchiveService

from . import api_dispatch, api_geo, api_party, api_recordings, api_telemetry, http_api, openapi, sio_packet, whip
from .actions import Action, ActionService, RunningActions
from .alerts import AlertService
from .appkeys import ACTIONS, ALERTS, ARCHIVE, AUDIT, EXPORTS, PARTY, AUTH, INSTRUCTIONS, LIVE, ROSTER, POSITIONS, RUNNING, SETTINGS, SIO, STORE, TALK, TELEMETRY, UPDATES
from .audit import AuditTrail
from .auth import Authenticator
from .config import Settings
from .errors import DispatchError
from .geo_index import MemoryPositionIndex, RedisPositionIndex
from .instructions import InstructionService
from .live import LiveService
from .exports import ExportService, load_link_secret
from .party import PartyService
from .positions import PositionService
from .presence import MemoryPresence, Presence, PresenceStore, RedisPresence
from .roster import Roster
from .sio_console import OPERATORS_ROOM, ConsoleNamespace
from .sio_unit import UnitNamespace
from .store import Store
from .talk import TalkService
from .telemetry import TelemetryHub
from .updates import UpdateBatcher

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
CONSOLE_DIR = REPO_ROOT / "console"
SIO_CLIENT_JS = CONSOLE_DIR / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
LEAFLET_DIR = CONSOLE_DIR / "node_modules" / "leaflet" / "dist"

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

    async def portal_page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(static / "portal.html")

    async def sio_client(request: web.Request) -> web.StreamResponse:
        if not SIO_CLIENT_JS.is_file():
            raise DispatchError(
                "the Socket.IO browser client is not installed: run 'make install' (npm ci in console/)",
                code="console_not_installed",
            )
        return web.FileResponse(SIO_CLIENT_JS)

    app.router.add_get("/", console_page)
    app.router.add_get("/field", field_page)
    app.router.add_get("/portal", portal_page)  # the party portal (当事人查询)
    app.router.add_get("/vendor/socket.io.min.js", sio_client)
    if LEAFLET_DIR.is_dir():
        app.router.add_static("/vendor/leaflet/", LEAFLET_DIR, follow_symlinks=False)
    else:
        async def leaflet_missing(request: web.Request) -> web.StreamResponse:
            raise DispatchError("the map library is not installed: run 'make install' (npm ci in console/)",
                                code="console_not_installed")

        app.router.add_get("/vendor/leaflet/{path:.*}", leaflet_missing)
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
        serializer=sio_packet.Packet,  # skips the binary search of TextOnly payloads
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
    _wire_dispatch(app, settings, sio, roster, relay, live, unit_ns, clock)
    archive = _wire_archive(app, settings, node, live, clock) if settings.archive.enabled else None
    exports = _wire_party(app, settings, archive, clock) if archive is not None else None

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
        if archive is not None:
            await archive.start()  # crash recovery runs before anything records
        if exports is not None:
            await exports.start_loop()  # exports a stop interrupted start again
        live.start()
        app[INSTRUCTIONS].start(settings.alerts.sweep_interval_s)
        app[ALERTS].start(settings.alerts.sweep_interval_s)
        app[POSITIONS].start()
        yield
        await app[TALK].close()
        await live.close()
        if exports is not None:
            await exports.close()
        if archive is not None:
            # Seals every segment and signs the final tree head; recording.json still needs the
            # track store and the instructions, so those close after it.
            await archive.close()
        await app[POSITIONS].close()
        await app[RUNNING].close()
        await app[UPDATES].close()
        await app[INSTRUCTIONS].close()
        await app[ALERTS].close()

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

    async def close_sockets(app: web.Application) -> None:
        """Before aiohttp waits for open connections: close every Socket.IO connection, so units
        reconnect elsewhere (or here after a restart) and no websocket holds up the shutdown."""
        try:
            await asyncio.wait_for(sio.shutdown(), timeout=5)
        except Exception as exc:
            logger.warning("Socket.IO shutdown incomplete: %r", exc)

    async def close_telemetry(app: web.Application) -> None:
        await app[TELEMETRY].close_all()

    app.on_shutdown.extend([close_sockets, close_telemetry])
    app.cleanup_ctx.extend([store_ctx, presence_ctx, live_ctx, sio_ctx])
    if archive is not None:  # the catalog starts after the archive (live_ctx) and stops before it
        api_recordings.wire(app, archive, api_recordings.retention_policy(settings.archive), clock)

    app.router.add_routes(http_api.routes)
    app.router.add_routes(whip.routes)
    app.router.add_routes(api_telemetry.routes)
    app.router.add_routes(api_geo.routes)
    app.router.add_routes(api_dispatch.routes)
    if exports is not None:
        app.router.add_routes(api_party.routes)
    app.router.add_routes(api_recordings.routes)
    app.router.add_routes(openapi.routes)
    _static_routes(app)
    logger.info("node %s configured (redis: %s)", node, "on" if settings.redis.url else "off")
    return app


def _wire_dispatch(app: web.Application, settings: Settings, sio: socketio.AsyncServer, roster: Roster,
                   relay: Relay, live: LiveService, unit_ns: UnitNamespace, clock: Callable[[], float]) -> None:
    """Actions, instructions, alerts and talk-back, and the events they push."""
    store = app[STORE]
    audit = AuditTrail(store, clock)
    app[AUDIT] = audit

    async def to_operators(event: str, data: dict[str, Any]) -> None:
        await sio.emit(event, data, room=OPERATORS_ROOM, namespace="/console")

    async def to_unit(unit_id: str, event: str, data: dict[str, Any]) -> None:
        await sio.emit(event, data, room=f"unit:{unit_id}", namespace="/unit")

    async def action_changed(action: Action) -> None:
        app[RUNNING].invalidate()
        await to_operators("action_update", action.view())
        if ARCHIVE in app:
            await app[ARCHIVE].action_changed(action.units)
        for unit_id in action.units:
            await roster.announce(unit_id)

    actions = ActionService(store, audit, action_changed, clock)
    app[ACTIONS] = actions
    alerts = AlertService(store, audit, to_operators, settings.alerts.escalate_after_s, clock)
    app[ALERTS] = alerts

    # Running action per unit, asked for with every fix (thousands a second): from memory, read
    # again at once when this node changes an action, refreshed in the background every second.
    unit_actions = RunningActions(actions)
    app[RUNNING] = unit_actions
    roster.unit_actions = unit_actions

    async def online_units() -> list[str]:
        return [u for u, p in (await roster.presence.all()).items() if p.online]

    async def notify(unit_id: str, seq: int, new: list[dict[str, Any]]) -> None:
        await to_unit(unit_id, "instructions_pending", {"max_seq": seq, "instructions": new})

    updates = UpdateBatcher(lambda batch: to_operators("instruction_update", batch[0]) if len(batch) == 1
                            else to_operators("instruction_updates", {"instructions": batch}))
    app[UPDATES] = updates

    async def instruction_update(view: dict[str, Any]) -> None:
        updates.add(view)

    instructions = InstructionService(store, audit, actions, alerts, notify, instruction_update, online_units, clock)
    app[INSTRUCTIONS] = instructions
    talk = TalkService(relay, actions, audit, to_unit, lambda: live.ice_servers, settings.media.publisher_timeout_s,
                       lambda unit_id: unit_id in unit_ns.connections, clock)
    app[TALK] = talk
    roster.stale_after_s = settings.geo.stale_after_s
    index = RedisPositionIndex(settings.redis.url) if settings.redis.url else MemoryPositionIndex()
    positions = PositionService(SqliteTrackStore(settings.data_dir / "tracks.sqlite3"), roster, actions, alerts,
                                audit, unit_actions, settings.geo.stale_after_s, index, clock,
                                push_positions=lambda units: to_operators("unit_positions", sio_packet.TextOnly(units=units)))
    app[POSITIONS] = positions
    app[TELEMETRY] = TelemetryHub()
    unit_ns.instructions, unit_ns.alerts, unit_ns.actions, unit_ns.talk = instructions, alerts, actions, talk
    unit_ns.positions = positions

    async def watch_unit(before: Presence | None, after: Presence) -> None:
        """流程预警: a unit of a running action drops out or stops its video."""
        if before is None:
            return
        lost = before.online and not after.online
        stopped = before.publishing and not after.publishing and after.connected
        if not (lost or stopped):
            return
        action = await actions.running_for_unit(after.unit_id)
        if action is None:
            return
        if lost:
            await alerts.raise_alert("unit_offline", after.unit_id,
                                     f"unit {after.unit_id} of action {action.case_number} went offline",
                                     action_id=action.id, case_number=action.case_number, position=after.position)
        else:
            await alerts.raise_alert("stopped_publishing", after.unit_id,
                                     f"unit {after.unit_id} of action {action.case_number} stopped sending video",
                                     action_id=action.id, case_number=action.case_number, position=after.position)

    roster.watchers.append(watch_unit)


def _wire_archive(app: web.Application, settings: Settings, node: str, live: LiveService,
                  clock: Callable[[], float]) -> ArchiveService:
    """The evidence archive records every unit that publishes on this node."""
    actions, alerts, sio = app[ACTIONS], app[ALERTS], app[SIO]
    rules = {r.category for r in settings.archive.retention}

    async def action_for(unit_id: str) -> ActionContext:
        action = await actions.running_for_unit(unit_id)
        if action is None:
            return ActionContext(None, None, (), settings.archive.default_category)
        category = action.type if action.type in rules else settings.archive.default_category
        return ActionContext(action.id, action.case_number, action.officers, category)

    async def alarm(kind: str, message: str, detail: dict[str, Any]) -> None:
        # The archive may share a full disk with the database: operators hear of it even when
        # the alert cannot be stored.
        try:
            await alerts.raise_alert(kind, "archive", message)
        except Exception as exc:
            logger.error("alert %s not stored (%s); sent to operators anyway", kind, exc)
            await sio.emit("alert", {"id": None, "kind": kind, "unit_id": "archive", "message": message,
                                     "state": "open", "created_at": clock(), "detail": detail},
                           room=OPERATORS_ROOM, namespace="/console")

    positions, instructions = app[POSITIONS], app[INSTRUCTIONS]

    async def describe(unit_id: str, since: float, until: float) -> dict[str, Any]:
        """What recording.json holds besides the media: the unit's GPS track and the instructions
        it was sent while recording."""
        points = await asyncio.to_thread(positions.tracks.query, unit_id, since - 1.0, until + 1.0, 200_000)
        sent = [i.view() for i in await instructions.list(unit=unit_id, limit=1000)
                if since - 1.0 <= i.created_at <= until]
        return {"gps_track": track_geojson(unit_id, [p.fix for p in points]),
                "instructions": sorted(sent, key=lambda v: v["seq"])}

    a = settings.archive
    archive = ArchiveService(settings.archive_dir, settings.signing_key_path, node, segment_s=a.segment_s,
                             queue_frames=a.queue_frames, reconnect_grace_s=a.reconnect_grace_s,
                             sign_interval_s=a.sign_interval_s, min_free_bytes=a.min_free_bytes,
                             action_for=action_for, alarm=alarm, describe=describe, clock=clock)
    app[ARCHIVE] = archive
    live.recorder = archive
    return archive


def _wire_party(app: web.Application, settings: Settings, archive: ArchiveService,
                clock: Callable[[], float]) -> ExportService:
    """Party access: codes, footage requests, approvals, exports and download links."""
    sio = app[SIO]

    async def changed(doc: dict[str, Any]) -> None:
        view = {k: v for k, v in doc.items() if k != "export"} | {
            "export": {k: v for k, v in (doc.get("export") or {}).items() if not k.endswith("_path")}}
        await sio.emit("footage_request", view, room=OPERATORS_ROOM, namespace="/console")

    party = PartyService(app[STORE], settings.party, app[ACTIONS], archive.record, changed, clock)
    app[PARTY] = party
    exports = ExportService(party, archive, app[ACTIONS], settings.data_dir / "exports", settings.signing_key_path,
                            load_link_secret(settings.data_dir / "keys" / "link-secret"),
                            settings.party.export_workers, clock)
    app[EXPORTS] = exports
    return exports

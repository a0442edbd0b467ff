"""The composition root: ``create_app(settings)`` builds every part bottom-up and ties each one's
lifetime to the application. It only constructs: every dependency goes into a constructor, no
attribute is set afterwards, and no rule lives here.

Lifetimes: one cleanup context per resource, in the order they are listed at the end. aiohttp
starts them in that order and closes those that started in reverse, so a failed start closes
exactly what was started, and a stop closes talk-back and live sessions first (sealing the
recordings they feed), then the archive, the services it reads from, and storage last.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from functools import partial
from typing import Any, Callable
from zoneinfo import ZoneInfo

from aiohttp import web

from geo.track import SqliteTrackStore, TrackStore
from geo.track_postgres import PostgresTrackStore
from media import passthrough
from media.relay import Relay, RelayConfig
from recordings.archive import ArchiveService
from recordings.catalog import Catalog
from recordings.watermark import find_cjk_font

from . import appkeys as k
from .account_admin import AccountAdmin
from .action_report import ActionReports
from .actions import ActionService, ActionStore
from .alerts import AlertService
from .audit import AuditTrail
from .audit_ledger import AuditLedger
from .auth import Authenticator
from .compliance import ComplianceWatch
from .config import MediaConfig, Settings
from .denials import DenialLedger
from .evidence import ArchiveActions, EvidencePorts
from .evidence_catalog import EvidenceCatalog, catalog_location
from .export_sources import ExportSources
from .exports import ExportService, load_link_secret
from .footage_requests import FootageRequests
from .http import worker_api
from .http.guard_stats import GuardStats
from .http.metrics_listener import MetricsListener
from .http.middleware import errors_middleware, headers_middleware
from .http.node_figures import NodeFigures
from .http.request import read_body
from .http.routes import ARCHIVE_ROUTES, ROUTES
from .http.static import add_static_routes
from .http.telemetry_frames import TelemetryHub
from .http.tickets import PlaybackTickets
from .instructions import InstructionService
from .lifetime import lifetime
from .links import UnitLinks
from .live import LiveService, ice_servers
from .login_throttle import LoginThrottle
from .media_host import LocalMediaHost, MediaHost
from .media_worker import MediaWorker
from .media_workers import MediaWorkers
from .metrics import Metrics
from .node import node_id
from .node_tokens import NodeTokens
from .party_access import PartyAccess
from .party_links import PartyLinks
from .positions import PositionService
from .procedure import ProcedureWatch
from .procedure_breaks import ProcedureBreakStore
from .pulls import Pulls
from .retention import retention_policy
from .revocation import Revocation
from .roster import Roster
from .running_actions import RunningActions
from .sio.console_namespace import ConsoleNamespace
from .sio.engineio_guard import EngineIOGuard
from .sio.handshakes import Handshakes
from .sio.push import Push
from .sio.server import NAMESPACES, SioLifetime, build_sio
from .sio.unit_namespace import UnitNamespace
from .snapshots import SnapshotService
from .sos import SosService
from .statistics import Evidence, StatsService
from .stopping import Stopping
from .stores.accounts import Accounts
from .stores.engines import open_database
from .stores.position_index import MemoryPositionIndex, PositionIndex, RedisPositionIndex
from .stores.presence import MemoryPresence, PresenceStore, RedisPresence
from .talk import TalkService


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """Build the whole server for ``settings``. Nothing starts until the app runs."""
    passthrough.install()  # this process forwards media, it never decodes it
    app = web.Application(middlewares=[headers_middleware, errors_middleware],
                          client_max_size=max(settings.server.max_message_bytes, settings.server.max_sdp_bytes))
    node, redis_url = node_id(settings), settings.redis.url

    # storage
    db = open_database(settings.storage.url, settings.data_dir, settings.storage.pool_size)
    accounts = Accounts(db)
    presence: PresenceStore = (RedisPresence(redis_url, node, settings.cluster.advertise_url) if redis_url
                               else MemoryPresence(node))
    index: PositionIndex = RedisPositionIndex(redis_url) if redis_url else MemoryPositionIndex()
    tracks: TrackStore = (PostgresTrackStore(settings.storage.url) if settings.storage.url
                          else SqliteTrackStore(settings.data_dir / "tracks.sqlite3"))

    # the edge the domain pushes through
    sio = build_sio(settings)
    sio.attach(app)
    push = Push(sio)

    # the domain, bottom-up
    metrics = Metrics(node)
    audit = AuditTrail(db, clock)
    revocation = Revocation(accounts, clock=clock)
    auth = Authenticator(accounts, settings.auth.session_ttl_s, revocation, LoginThrottle(), audit, clock)
    action_store = ActionStore(db, clock)
    running = RunningActions(action_store)
    alerts = AlertService(db, audit, push.operators, settings.alerts.escalate_after_s, metrics, clock)
    stopping = Stopping(push.server_restarting, clock)
    procedure = ProcedureWatch(action_store, alerts, stopping)
    procedure_breaks = ProcedureBreakStore(db)
    compliance = ComplianceWatch(action_store, settings.procedure, procedure_breaks, alerts, audit, stopping,
                                 presence, running, push.action_procedure, clock)
    roster = Roster(accounts, presence, running, push.unit_status,
                    watchers=[procedure.unit_changed, compliance.unit_changed],
                    stale_after_s=settings.geo.stale_after_s, clock=clock)
    links = UnitLinks()
    account_admin = AccountAdmin(accounts, auth, audit, revocation, roster.announce, roster.forget,
                                 settings.auth.min_password_length, clock)
    instructions = InstructionService(db, accounts, audit, action_store, alerts, push.instructions_pending,
                                      push.instruction_update, roster.online_units, metrics, clock)
    positions = PositionService(tracks, roster, action_store, alerts, audit, running, settings.geo.stale_after_s,
                                index, clock, push_positions=push.positions, metrics=metrics, moved=compliance.moved)
    sos = SosService(alerts, action_store, presence, clock)
    relay = _relay(settings.media)
    archive: ArchiveService | None = None
    if settings.archive.enabled:
        a = settings.archive
        ports = EvidencePorts(a, action_store, alerts, push.operators, tracks, instructions, clock)
        archive = ArchiveService(settings.archive_dir, settings.signing_key_path, node, segment_s=a.segment_s,
                                 queue_frames=a.queue_frames, reconnect_grace_s=a.reconnect_grace_s,
                                 sign_interval_s=a.sign_interval_s, min_free_bytes=a.min_free_bytes,
                                 action_for=ports.action_for, alarm=ports.alarm, describe=ports.describe, clock=clock,
                                 checkpoint=settings.checkpoint_path, witnesses=settings.witness_targets)
    node_tokens = NodeTokens(settings.cluster.secret, node, settings.cluster.token_ttl_s, audit, clock)
    pulls = Pulls(relay, presence, node_tokens, settings.cluster, ice_servers(settings.media),
                  settings.media.publisher_timeout_s)
    local_media = LocalMediaHost(relay, ice_servers(settings.media))
    media: MediaHost = local_media
    if settings.media.worker_count > 0:  # one unit's media per worker process; this process keeps pulled units
        boot = {"media": dataclasses.asdict(settings.media), "log": dataclasses.asdict(settings.log), "node": node,
                "event_loop": settings.server.event_loop, "malloc_arena_max": settings.server.malloc_arena_max}
        media = MediaWorkers(settings.media.worker_count, [sys.executable, "-m", "dispatch_server", "media-worker"],
                             boot, local_media)
    live = LiveService(accounts, media, roster, settings.media, node, push.viewer_closed, recorder=archive,
                       revocation=revocation, stopping=stopping, pulls=pulls, on_media_lost=push.media_lost)
    talk = TalkService(media, action_store, audit, push.unit, push.operators,
                       settings.media.publisher_timeout_s, links, clock)
    action_listeners = [running.action_changed, push.action_update, roster.action_changed, compliance.action_changed]
    if archive is not None:
        action_listeners.insert(2, ArchiveActions(archive).action_changed)
    actions = ActionService(action_store, accounts, audit, action_listeners, clock)
    telemetry = TelemetryHub()
    figures = NodeFigures(metrics, live, links, telemetry, db, action_store, presence, archive)
    metrics_listener = MetricsListener(settings.metrics, metrics, figures)

    # the Socket.IO edge
    sio_lifetime = SioLifetime(sio)
    handshakes = Handshakes(sio, NAMESPACES, settings.server)
    wire = EngineIOGuard(sio, read_body)  # what clients send, checked before Engine.IO and Socket.IO read it
    sio.register_namespace(UnitNamespace(auth, roster, links, live, instructions, sos, talk, positions,
                                         revocation, settings.server, compliance))
    sio.register_namespace(ConsoleNamespace(auth, roster, live, revocation, settings.server))

    services: dict[web.AppKey[Any], Any] = {
        k.SETTINGS: settings, k.DATABASE: db, k.ACCOUNTS: accounts, k.ACCOUNT_ADMIN: account_admin, k.AUTH: auth,
        k.REVOCATION: revocation,
        k.SIO: sio, k.AUDIT: audit,
        k.ROSTER: roster, k.ALERTS: alerts, k.INSTRUCTIONS: instructions, k.POSITIONS: positions, k.SOS: sos,
        k.LIVE: live, k.TALK: talk, k.ACTIONS: actions, k.TELEMETRY: telemetry, k.METRICS: metrics,
        k.NODE_FIGURES: figures, k.METRICS_LISTENER: metrics_listener,
        k.GUARD_STATS: GuardStats(), k.HANDSHAKES: handshakes, k.SIO_WIRE: wire,
        k.STOPPING: stopping, k.COMPLIANCE: compliance, k.NODE_TOKENS: node_tokens,
    }
    contexts = [
        lifetime(metrics.close, metrics.start),
        lifetime(db.close),
        lifetime(auth.close),
        lifetime(presence.close, presence.start),
        lifetime(partial(roster.disconnected, links), partial(roster.forget_node, node)),
        lifetime(sio_lifetime.close, sio_lifetime.start),
        lifetime(handshakes.close, handshakes.start),
        lifetime(push.close),
        lifetime(running.close),
        lifetime(alerts.close, partial(alerts.start, settings.alerts.sweep_interval_s)),
        lifetime(instructions.close, partial(instructions.start, settings.alerts.sweep_interval_s)),
        lifetime(positions.close, positions.start),
        lifetime(revocation.close, revocation.start),
    ]
    routes = list(ROUTES)
    stats_evidence: Evidence | None = None
    sources: ExportSources | None = None

    if archive is not None:  # the evidence archive, its catalog, and party access to it
        evidence = EvidenceCatalog(Catalog(catalog_location(settings)), archive,
                                   retention_policy(settings.archive), clock)
        denials = DenialLedger(archive.record, clock=clock)
        party = PartyAccess(db, settings.party, action_store, archive.record, clock)
        requests = FootageRequests(db, settings.party, party, archive.record, push.footage_request, clock)
        party_links = PartyLinks(db, settings.party, requests, archive.record, clock)
        sources = ExportSources(evidence, clock, procedure_breaks, ZoneInfo(settings.console.time_zone))
        exports = ExportService(requests, party_links, archive, action_store, sources,
                                settings.archive_dir / "exports", settings.signing_key_path,
                                load_link_secret(settings.data_dir / "keys" / "link-secret"),
                                settings.party.export_workers, ZoneInfo(settings.party.time_zone), clock, metrics,
                                find_cjk_font(settings.watermark_font_path))
        snapshots = SnapshotService(archive.seal_snapshot, action_store, instructions, push.snapshot)
        audit_ledger = AuditLedger(db, evidence, ports.alarm)
        services |= {k.ARCHIVE: archive, k.EVIDENCE: evidence, k.DENIALS: denials, k.AUDIT_LEDGER: audit_ledger,
                     k.TICKETS: PlaybackTickets(clock), k.PARTY: party, k.REQUESTS: requests, k.LINKS: party_links,
                     k.EXPORTS: exports, k.SNAPSHOTS: snapshots}
        contexts += [lifetime(archive.close, archive.start),  # crash recovery runs before anything records
                     lifetime(evidence.close, evidence.start),
                     lifetime(audit_ledger.close, audit_ledger.start),
                     lifetime(denials.close, denials.start),
                     lifetime(exports.close, exports.start)]
        routes += ARCHIVE_ROUTES
        stats_evidence = Evidence(evidence.catalog, evidence.sync, evidence.verification)
    stats = services[k.STATS] = StatsService(db, settings.procedure, ZoneInfo(settings.console.time_zone),
                                             stats_evidence, clock)
    contexts.append(lifetime(stats.close, stats.start))
    services[k.REPORTS] = ActionReports(action_store, accounts, instructions, alerts, tracks, sources,
                                        procedure_breaks,
                                        settings.procedure, settings.console.time_zone, clock)

    contexts += [lifetime(compliance.close, partial(compliance.start, archive)),  # after the archive it follows
                 lifetime(media.close, media.start),  # workers start before, and stop after, the sessions
                 lifetime(live.close, live.start), lifetime(talk.close), lifetime(figures.close, figures.start),
                 lifetime(metrics_listener.close, metrics_listener.start)]
    for key, service in services.items():
        app[key] = service
    app.cleanup_ctx.extend(contexts)
    app.on_shutdown.extend([lambda _: sio_lifetime.shutdown(), lambda _: telemetry.close_all()])
    for table in routes:
        app.router.add_routes(table)
    add_static_routes(app.router)
    return app


def create_worker_app(media: MediaConfig, secret: str, index: int) -> web.Application:
    """A media worker's app (``dispatch-server media-worker``): its sessions and relay behind the
    internal API its front calls (:mod:`dispatch_server.http.worker_api`)."""
    passthrough.install()
    worker = MediaWorker(LocalMediaHost(_relay(media), ice_servers(media)), index)
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[k.WORKER] = worker
    app[k.WORKER_SECRET] = secret
    app.cleanup_ctx.append(lifetime(worker.close, worker.start))
    app.router.add_routes(worker_api.routes)
    return app


def _relay(media: MediaConfig) -> Relay:
    return Relay(RelayConfig(pli_min_interval_s=media.pli_min_interval_s, keyframe_interval_s=media.keyframe_interval_s,
                             viewer_queue_frames=media.viewer_queue_frames, engine=media.engine,
                             publisher_max_bitrate=media.publisher_max_bitrate,
                             viewer_rtx_share=media.viewer_rtx_share, native_dataplane=media.native_dataplane))

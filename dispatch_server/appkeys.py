"""Typed keys under which ``create_app`` puts the services on the application, for the edges.

Handlers reach services only through these keys; services never read the application.
"""

from __future__ import annotations

import socketio
from aiohttp import web

from recordings.archive import ArchiveService

from .account_admin import AccountAdmin
from .action_report import ActionReports
from .actions import ActionService
from .alerts import AlertService
from .audit import AuditTrail
from .audit_ledger import AuditLedger
from .auth import Authenticator
from .compliance import ComplianceWatch
from .config import Settings
from .denials import DenialLedger
from .evidence_catalog import EvidenceCatalog
from .exports import ExportService
from .footage_requests import FootageRequests
from .http.guard_stats import GuardStats
from .http.metrics_listener import MetricsListener
from .http.node_figures import NodeFigures
from .http.telemetry_frames import TelemetryHub
from .http.tickets import PlaybackTickets
from .instructions import InstructionService
from .live import LiveService
from .media_worker import MediaWorker
from .metrics import Metrics
from .node_tokens import NodeTokens
from .party_access import PartyAccess
from .party_links import PartyLinks
from .positions import PositionService
from .revocation import Revocation
from .roster import Roster
from .sio.engineio_guard import EngineIOGuard
from .sio.handshakes import Handshakes
from .snapshots import SnapshotService
from .sos import SosService
from .statistics import StatsService
from .stopping import Stopping
from .stores.accounts import Accounts
from .stores.database import Database
from .talk import TalkService

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
ACCOUNTS = web.AppKey("accounts", Accounts)
ACCOUNT_ADMIN = web.AppKey("account_admin", AccountAdmin)
AUTH = web.AppKey("auth", Authenticator)
REVOCATION = web.AppKey("revocation", Revocation)
ROSTER = web.AppKey("roster", Roster)
LIVE = web.AppKey("live", LiveService)
NODE_TOKENS = web.AppKey("node_tokens", NodeTokens)
SIO = web.AppKey("sio", socketio.AsyncServer)
AUDIT = web.AppKey("audit", AuditTrail)
ACTIONS = web.AppKey("actions", ActionService)
ALERTS = web.AppKey("alerts", AlertService)
SOS = web.AppKey("sos", SosService)
INSTRUCTIONS = web.AppKey("instructions", InstructionService)
TALK = web.AppKey("talk", TalkService)
POSITIONS = web.AppKey("positions", PositionService)
TELEMETRY = web.AppKey("telemetry", TelemetryHub)
METRICS = web.AppKey("metrics", Metrics)
NODE_FIGURES = web.AppKey("node_figures", NodeFigures)
METRICS_LISTENER = web.AppKey("metrics_listener", MetricsListener)
GUARD_STATS = web.AppKey("guard_stats", GuardStats)  # the connection guard's (http/connection_guard.py)
HANDSHAKES = web.AppKey("handshakes", Handshakes)
SIO_WIRE = web.AppKey("sio_wire", EngineIOGuard)
STOPPING = web.AppKey("stopping", Stopping)
STATS = web.AppKey("stats", StatsService)
REPORTS = web.AppKey("reports", ActionReports)
# Present only when the evidence archive is enabled (archive.enabled):
ARCHIVE = web.AppKey("archive", ArchiveService)
EVIDENCE = web.AppKey("evidence", EvidenceCatalog)
DENIALS = web.AppKey("denials", DenialLedger)
TICKETS = web.AppKey("tickets", PlaybackTickets)
PARTY = web.AppKey("party", PartyAccess)
REQUESTS = web.AppKey("requests", FootageRequests)
LINKS = web.AppKey("links", PartyLinks)
EXPORTS = web.AppKey("exports", ExportService)
SNAPSHOTS = web.AppKey("snapshots", SnapshotService)
AUDIT_LEDGER = web.AppKey("audit_ledger", AuditLedger)
COMPLIANCE = web.AppKey("compliance", ComplianceWatch)
# Only on a media worker's own app (``create_worker_app``):
WORKER = web.AppKey("worker", MediaWorker)
WORKER_SECRET = web.AppKey("worker_secret", str)

"""Typed keys for the objects ``create_app`` puts on the application."""

from __future__ import annotations

import socketio
from aiohttp import web

from recordings.archive import ArchiveService
from recordings.catalog import Catalog

from .actions import ActionService, RunningActions
from .alerts import AlertService
from .audit import AuditTrail
from .auth import Authenticator
from .config import Settings
from .exports import ExportService
from .instructions import InstructionService
from .live import LiveService
from .party import PartyService
from .positions import PositionService
from .roster import Roster
from .store import Store
from .talk import TalkService
from .telemetry import TelemetryHub
from .updates import UpdateBatcher

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
AUTH = web.AppKey("auth", Authenticator)
ROSTER = web.AppKey("roster", Roster)
LIVE = web.AppKey("live", LiveService)
SIO = web.AppKey("sio", socketio.AsyncServer)
AUDIT = web.AppKey("audit", AuditTrail)
ACTIONS = web.AppKey("actions", ActionService)
RUNNING = web.AppKey("running", RunningActions)
ALERTS = web.AppKey("alerts", AlertService)
INSTRUCTIONS = web.AppKey("instructions", InstructionService)
TALK = web.AppKey("talk", TalkService)
UPDATES = web.AppKey("updates", UpdateBatcher)
POSITIONS = web.AppKey("positions", PositionService)
ARCHIVE = web.AppKey("archive", ArchiveService)
CATALOG = web.AppKey("catalog", Catalog)
PARTY = web.AppKey("party", PartyService)
EXPORTS = web.AppKey("exports", ExportService)
TELEMETRY = web.AppKey("telemetry", TelemetryHub)

"""Typed keys for the objects ``create_app`` puts on the application."""

from __future__ import annotations

import socketio
from aiohttp import web

from .auth import Authenticator
from .config import Settings
from .live import LiveService
from .roster import Roster
from .store import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
AUTH = web.AppKey("auth", Authenticator)
ROSTER = web.AppKey("roster", Roster)
LIVE = web.AppKey("live", LiveService)
SIO = web.AppKey("sio", socketio.AsyncServer)

"""Socket.IO ``/console`` namespace: operators' live roster, and offer/answer for viewing."""

from __future__ import annotations

import logging
from typing import Any

import socketio

from ..auth import Authenticator, Person
from ..config import ServerConfig
from ..errors import DispatchError
from ..live import LiveService
from ..roster import Roster
from .events import event, refuse
from .messages import parse_session_ref, parse_watch

logger = logging.getLogger(__name__)

OPERATORS_ROOM = "operators"


class ConsoleNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    def __init__(self, auth: Authenticator, roster: Roster, live: LiveService, limits: ServerConfig) -> None:
        super().__init__("/console")
        self.auth = auth
        self.roster = roster
        self.live = live
        self.limits = limits

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            person = await self.auth.person(token if isinstance(token, str) else None)
            person.require("units.read")
        except DispatchError as exc:
            raise refuse(exc) from None
        await self.save_session(sid, {"person": person})
        await self.enter_room(sid, OPERATORS_ROOM)
        await self.emit("roster", {"units": await self.roster.units()}, to=sid)
        logger.info("console %s: %s (%s) connected", sid, person.username, person.role)

    async def _person(self, sid: str) -> Person:
        person: Person = (await self.get_session(sid))["person"]
        # Sessions expire while sockets stay open: check on every request, not only at connect.
        return await self.auth.person_by_hash(person.token_hash)

    @event("max_message_bytes")
    async def on_watch(self, sid: str, data: Any) -> dict[str, Any]:
        person = await self._person(sid)
        msg = parse_watch(data, self.limits.max_sdp_bytes)
        session_id, answer = await self.live.watch(msg.unit_id, msg.sdp, person)
        return {"ok": True, "sdp": answer, "session_id": session_id}

    @event()
    async def on_unwatch(self, sid: str, data: Any) -> dict[str, Any]:
        person = await self._person(sid)
        ref = parse_session_ref(data, "unwatch")
        await self.live.unwatch(None, ref.session_id, person)
        return {"ok": True}

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        logger.info("console %s: disconnected (%s)", sid, reason)

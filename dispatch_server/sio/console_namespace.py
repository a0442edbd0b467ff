"""Socket.IO ``/console`` namespace: operators' live roster, and offer/answer for viewing."""

from __future__ import annotations

import functools
import logging
from typing import Any

from ..auth import Authenticator, Person
from ..config import ServerConfig
from ..errors import DispatchError
from ..live import LiveService
from ..revocation import Grant, Revocation
from ..roster import Roster
from .events import EdgeNamespace, event, refuse
from .messages import parse_session_ref, parse_watch
from .rooms import rooms_of

logger = logging.getLogger(__name__)

class ConsoleNamespace(EdgeNamespace):
    """A person's console. It joins the rooms of the permissions its role holds (pushes go to the
    room of the permission they need), and it closes when the session ends (logout, expiry,
    password reset, disabled) or the role changes: the console reconnects and joins anew."""

    def __init__(self, auth: Authenticator, roster: Roster, live: LiveService, revocation: Revocation,
                 limits: ServerConfig) -> None:
        super().__init__("/console")
        self.auth = auth
        self.roster = roster
        self.live = live
        self.revocation = revocation
        self.limits = limits
        self._grants: dict[str, Grant] = {}

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            person = await self.auth.person(token if isinstance(token, str) else None)
            person.require("units.read")
        except DispatchError as exc:
            raise refuse(exc) from None
        await self.save_session(sid, {"person": person})
        for room in rooms_of(person.role):
            await self.enter_room(sid, room)
        self._grants[sid] = self.revocation.person_opened(person.token_hash, person.role, "console",
                                                          functools.partial(self._revoked, sid))
        await self.emit("roster", {"units": await self.roster.units()}, to=sid)
        logger.info("console %s: %s (%s) connected", sid, person.username, person.role)

    async def _revoked(self, sid: str, reason: str) -> None:
        await self.emit("revoked", {"reason": reason}, to=sid)
        await self.disconnect(sid)

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
        self.revocation.released(self._grants.pop(sid, None))
        logger.info("console %s: disconnected (%s)", sid, reason)

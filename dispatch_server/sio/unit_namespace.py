"""Socket.IO ``/unit`` namespace: field units connect with their token, publish, report positions."""

from __future__ import annotations

import functools
import logging
from typing import Any

from ..auth import Authenticator
from ..compliance import ComplianceWatch
from ..config import ServerConfig
from ..errors import BadRequest, DispatchError, Unauthorized
from ..instructions import InstructionService
from ..links import UnitLinks
from ..live import LiveService
from ..positions import PositionService
from ..revocation import Grant, Revocation
from ..roster import Roster
from ..sos import SosService
from ..talk import TalkService
from .events import EdgeNamespace, event, refuse
from .messages import (
    parse_callback,
    parse_instruction_state,
    parse_notice,
    parse_publish,
    parse_received,
    parse_session_ref,
    parse_sos,
    parse_sync,
    parse_talk_join,
    unpack_msgpack,
)
from .rooms import unit_room

logger = logging.getLogger(__name__)


class UnitNamespace(EdgeNamespace):
    def __init__(self, auth: Authenticator, roster: Roster, links: UnitLinks, live: LiveService,
                 instructions: InstructionService, sos: SosService, talk: TalkService, positions: PositionService,
                 revocation: Revocation, limits: ServerConfig, compliance: ComplianceWatch) -> None:
        super().__init__("/unit")
        self.revocation = revocation
        self._grants: dict[str, Grant] = {}  # by sid: what closes the link when the token is revoked
        self.auth = auth
        self.roster = roster
        self.links = links
        self.live = live
        self.instructions = instructions
        self.sos = sos
        self.talk = talk
        self.positions = positions
        self.limits = limits
        self.compliance = compliance

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        try:
            if not isinstance(auth, dict) or not isinstance(auth.get("unit_id"), str):
                raise Unauthorized("connect with auth={'unit_id': ..., 'token': ...}")
            token = auth.get("token")
            unit = await self.auth.unit(auth["unit_id"], token if isinstance(token, str) else None)
        except DispatchError as exc:
            raise refuse(exc) from None
        await self.save_session(sid, {"unit_id": unit.id, "token_hash": unit.token_hash})
        await self.enter_room(sid, unit_room(unit.id))
        self.links.opened(unit.id, sid)
        self._grants[sid] = self.revocation.unit_opened(unit.id, unit.token_hash, "socket.io link",
                                                        functools.partial(self._revoked, sid))
        logger.info("unit %s: connected (sid %s)", unit.id, sid)
        await self.roster.link_opened(unit.id)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self.revocation.released(self._grants.pop(sid, None))
        unit_id = (await self.get_session(sid)).get("unit_id")
        if unit_id is None:
            return
        logger.info("unit %s: disconnected (sid %s, %s)", unit_id, sid, reason)
        if self.links.closed(unit_id, sid):
            await self.roster.mark(unit_id, connected=False)

    async def _revoked(self, sid: str, reason: str) -> None:
        await self.emit("revoked", {"reason": reason}, to=sid)
        await self.disconnect(sid)

    async def _unit(self, sid: str) -> str:
        return str((await self.get_session(sid))["unit_id"])

    @event("max_message_bytes")
    async def on_publish(self, sid: str, data: Any) -> dict[str, Any]:
        unit_id = await self._unit(sid)
        offer = parse_publish(data, self.limits.max_sdp_bytes)
        token_hash = str((await self.get_session(sid))["token_hash"])
        session_id, answer = await self.live.publish(unit_id, offer.sdp, via="socket.io", credential=token_hash)
        return {"ok": True, "sdp": answer, "session_id": session_id}

    @event()
    async def on_unpublish(self, sid: str, data: Any) -> dict[str, Any]:
        unit_id = await self._unit(sid)
        await self.live.unpublish(unit_id, parse_session_ref(data, "unpublish").session_id)
        return {"ok": True}

    @event()
    async def on_position(self, sid: str, data: Any) -> dict[str, Any]:
        """One fix as JSON (simple clients); batches go through ``positions``."""
        unit_id = await self._unit(sid)
        result = await self.positions.ingest(unit_id, [data])
        if result["rejected"]:
            raise BadRequest(f"position: {result['rejected'][0]['error']}", code="bad_message")
        return {"ok": True}

    @event()
    async def on_positions(self, sid: str, data: Any) -> dict[str, Any]:
        """A batch of fixes, oldest first: msgpack bytes (a binary event), or a JSON list (browsers)."""
        unit_id = await self._unit(sid)
        if isinstance(data, list):
            return await self.positions.ingest(unit_id, data)
        if not isinstance(data, (bytes, bytearray)):
            raise BadRequest("positions: expected msgpack bytes (a binary event) or a list of fixes",
                             code="bad_message")
        return await self.positions.ingest(unit_id, unpack_msgpack(data, "positions"))

    # dispatch ----------------------------------------------------------------------------
    @event()
    async def on_sync(self, sid: str, data: Any) -> dict[str, Any]:
        unit_id = await self._unit(sid)
        found = await self.instructions.sync(unit_id, parse_sync(data).after_seq)
        return {"ok": True, "instructions": [i.wire() for i in found]}

    @event()
    async def on_received(self, sid: str, data: Any) -> dict[str, Any]:
        unit_id = await self._unit(sid)
        delivered, expired = await self.instructions.received(unit_id, parse_received(data).ids)
        return {"ok": True, "delivered": delivered, "expired": expired}

    @event()
    async def on_instruction_state(self, sid: str, data: Any) -> dict[str, Any]:
        unit_id = await self._unit(sid)
        msg = parse_instruction_state(data)
        ins = await self.instructions.set_state(unit_id, msg.id, msg.state, msg.reason, msg.result)
        return {"ok": True, "state": ins.state}

    @event()
    async def on_callback(self, sid: str, data: Any) -> dict[str, Any]:
        """The unit calls the command room back: operators are told to listen to it."""
        unit_id = await self._unit(sid)
        await self.talk.call_back(unit_id, parse_callback(data).instruction_id)
        return {"ok": True}

    @event()
    async def on_sos(self, sid: str, data: Any) -> dict[str, Any]:
        unit_id = await self._unit(sid)
        alert = await self.sos.raise_sos(unit_id, parse_sos(data))
        return {"ok": True, "alert_id": alert["id"]}

    @event()
    async def on_notice(self, sid: str, data: Any) -> dict[str, Any]:
        """The officer gave the spoken notice of the unit's running action (已告知, 流程预警)."""
        unit_id = await self._unit(sid)
        notice = await self.compliance.mark_notice(unit_id, parse_notice(data).officer)
        return {"ok": True, **notice.view()}

    @event("max_message_bytes")
    async def on_talk_join(self, sid: str, data: Any) -> dict[str, Any]:
        unit_id = await self._unit(sid)
        msg = parse_talk_join(data, self.limits.max_sdp_bytes)
        return {"ok": True, "sdp": await self.talk.join(unit_id, msg.talk_id, msg.sdp)}

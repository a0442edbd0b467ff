"""What the server pushes, and to whom: the domain's outbound events as Socket.IO emits.

Services receive bound methods of :class:`Push` (``push.operators``, ``push.unit``, ...) as plain
callables, so the domain never sees the Socket.IO server. A console event goes to the room of the
permission that may read it (:data:`EVENT_PERMISSION`; an event without an entry is a programming
error and raises), a unit's to its room of ``/unit``; in Redis mode through Redis to every node.
"""

from __future__ import annotations

import asyncio
from typing import Any

import socketio

from ..actions import Action
from ..footage_requests import court_view
from .packet import TextOnly
from .rooms import permission_room, unit_room
from .updates import UpdateBatcher

# Every event consoles get, and the permission (auth.PERMISSIONS) a person needs to get it.
EVENT_PERMISSION = {
    "unit_status": "units.read",
    "unit_positions": "units.read",
    "viewer_closed": "live.watch",
    "unit_callback": "live.watch",
    "alert": "dispatch.read",
    "alert_update": "dispatch.read",
    "action_update": "dispatch.read",
    "instruction_update": "dispatch.read",
    "instruction_updates": "dispatch.read",
    "footage_request": "requests.read",
    "snapshot": "evidence.view",
    "action_procedure": "dispatch.read",
}

# Emits in flight at once when a broadcast tells many units of new instructions. python-socketio's
# emit waits for a task per recipient, so one emit after another costs a loop turn each, behind
# everything else that is ready (1,000 units: 1,000 turns); in Redis mode each is a PUBLISH that
# takes a connection of the pool for its duration, hence a bound.
PENDING_EMITS_IN_FLIGHT = 64


class Push:
    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio
        # A broadcast to 1,000 units changes 1,000 instructions twice within a second: operators
        # get them as a few list events.
        self._updates = UpdateBatcher(self._instruction_updates)

    async def operators(self, event: str, data: dict[str, Any]) -> None:
        """To every console whose person may read ``event``."""
        room = permission_room(EVENT_PERMISSION[event])
        await self._sio.emit(event, data, room=room, namespace="/console")

    async def unit(self, unit_id: str, event: str, data: dict[str, Any]) -> None:
        await self._sio.emit(event, data, room=unit_room(unit_id), namespace="/unit")

    async def unit_status(self, view: dict[str, Any]) -> None:
        await self.operators("unit_status", view)

    async def viewer_closed(self, info: dict[str, Any]) -> None:
        await self.operators("viewer_closed", info)

    async def positions(self, units: list[dict[str, Any]]) -> None:
        await self.operators("unit_positions", TextOnly(units=units))

    async def action_update(self, action: Action) -> None:
        await self.operators("action_update", action.view())

    async def instructions_pending(self, notices: list[tuple[str, int, list[dict[str, Any]]]]) -> None:
        """``instructions_pending`` to each ``(unit_id, max_seq, instructions)``, up to
        ``PENDING_EMITS_IN_FLIGHT`` emits at a time. The instructions hold only JSON types."""
        for start in range(0, len(notices), PENDING_EMITS_IN_FLIGHT):
            await asyncio.gather(*(
                self.unit(unit_id, "instructions_pending", TextOnly(max_seq=seq, instructions=new))
                for unit_id, seq, new in notices[start:start + PENDING_EMITS_IN_FLIGHT]))

    async def instruction_update(self, view: dict[str, Any]) -> None:
        self._updates.add(view)

    async def _instruction_updates(self, batch: list[dict[str, Any]]) -> None:
        # Instruction views hold only JSON types: no search for binary data in up to 500 of them.
        if len(batch) == 1:
            await self.operators("instruction_update", TextOnly(batch[0]))
        else:
            await self.operators("instruction_updates", TextOnly(instructions=batch))

    async def media_lost(self, unit_id: str, reason: str) -> None:
        """To a unit whose publish the server lost (its media worker died): publish again now,
        rather than when the peer connection times out."""
        await self.unit(unit_id, "media_lost", {"reason": reason})

    async def server_restarting(self, notice: dict[str, Any]) -> None:
        """To every console and every unit connected to this node: a planned stop has begun."""
        await self._sio.emit("server_restarting", notice, namespace="/console")
        await self._sio.emit("server_restarting", notice, namespace="/unit")

    async def action_procedure(self, compliance: dict[str, Any]) -> None:
        """A running action's compliance with the rules of procedure changed (流程预警)."""
        await self.operators("action_procedure", compliance)

    async def snapshot(self, view: dict[str, Any]) -> None:
        """A still entered the evidence archive (the fields of the upload's 201 answer)."""
        await self.operators("snapshot", view)

    async def footage_request(self, doc: dict[str, Any]) -> None:
        """A request changed: consoles get it without the server's file paths."""
        await self.operators("footage_request", court_view(doc))

    async def close(self) -> None:
        """Send what is pending."""
        await self._updates.close()

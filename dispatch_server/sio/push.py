"""What the server pushes, and to whom: the domain's outbound events as Socket.IO emits.

Services receive bound methods of :class:`Push` (``push.operators``, ``push.unit``, ...) as plain
callables, so the domain never sees the Socket.IO server. Operators' events go to the
operators' room of ``/console``, a unit's to its room of ``/unit``; in Redis mode through Redis
to every node.
"""

from __future__ import annotations

import asyncio
from typing import Any

import socketio

from ..actions import Action
from .console_namespace import OPERATORS_ROOM
from .packet import TextOnly
from .updates import UpdateBatcher

# Emits in flight at once when a broadcast tells many units of new instructions. python-socketio's
# emit waits for a task per recipient, so one emit after another costs a loop turn each, behind
# everything else that is ready (1,000 units: 1,000 turns); in Redis mode each is a PUBLISH that
# takes a connection of the pool for its duration, hence a bound.
PENDING_EMITS_IN_FLIGHT = 64


def unit_room(unit_id: str) -> str:
    return f"unit:{unit_id}"


class Push:
    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio
        # A broadcast to 1,000 units changes 1,000 instructions twice within a second: operators
        # get them as a few list events.
        self._updates = UpdateBatcher(self._instruction_updates)

    async def operators(self, event: str, data: dict[str, Any]) -> None:
        await self._sio.emit(event, data, room=OPERATORS_ROOM, namespace="/console")

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

    async def footage_request(self, doc: dict[str, Any]) -> None:
        """A request changed: consoles get it without the server's file paths."""
        view = {k: v for k, v in doc.items() if k != "export"} | {
            "export": {k: v for k, v in (doc.get("export") or {}).items() if not k.endswith("_path")}}
        await self.operators("footage_request", view)

    async def close(self) -> None:
        """Send what is pending."""
        await self._updates.close()

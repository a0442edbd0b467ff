"""Talk-back: an operator speaks to a unit (push-to-talk) over WebRTC, relayed without transcoding.

The operator publishes Opus into the relay channel ``talk:<unit>`` (same rules as a unit
publishing); the unit is told through ``/unit`` (``talk``) and joins as a viewer of that channel
(``talk_join``). Each talk session is linked to the unit's running action and audited.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from media.errors import CodecMismatch, SdpError
from utctime import iso_seconds

from .actions import ActionStore
from .audit import AuditTrail
from .auth import Person
from .errors import BadSdp, Conflict, Forbidden, NotFound
from .links import UnitLinks
from .media_host import HostedPublisher, HostedViewer, MediaHost

logger = logging.getLogger(__name__)

EmitUnit = Callable[[str, str, dict[str, Any]], Awaitable[None]]
EmitOperators = Callable[[str, dict[str, Any]], Awaitable[None]]


def _listener_ended(session: HostedViewer, reason: str) -> None:
    """A unit's listening session ends with its talk (or its link): nothing to do."""


@dataclass
class Talk:
    id: str
    unit_id: str
    operator: str
    action_id: str | None
    started_at: float
    publisher: HostedPublisher
    listeners: list[HostedViewer]


class TalkService:
    def __init__(self, media: MediaHost, actions: ActionStore, audit: AuditTrail, emit_unit: EmitUnit,
                 emit_operators: EmitOperators, timeout_s: float,
                 links: UnitLinks, clock: Callable[[], float] = time.time) -> None:
        self._media = media
        self._actions = actions
        self._audit = audit
        self._emit_unit = emit_unit
        self._emit_operators = emit_operators
        self._timeout_s = timeout_s
        self._links = links
        self._clock = clock
        self.talks: dict[str, Talk] = {}  # by talk id (= the operator's publisher session id)
        self._tasks: set[asyncio.Task[Any]] = set()

    @staticmethod
    def channel_id(unit_id: str) -> str:
        return f"talk:{unit_id}"

    async def start(self, unit_id: str, offer_sdp: str, person: Person) -> tuple[str, str]:
        person.require("live.watch")
        if not self._links.is_connected(unit_id):
            raise Conflict(f"unit {unit_id!r} is not connected to this node; it cannot hear you", code="unit_offline")
        for talk in self.talks.values():
            if talk.unit_id == unit_id:
                raise Conflict(f"{talk.operator} is already talking to unit {unit_id}", code="talk_busy")
        try:
            session, answer = await self._media.publish(unit_id, self.channel_id(unit_id), offer_sdp, self._timeout_s,
                                                        self._ended)
        except SdpError as exc:
            raise BadSdp(str(exc)) from exc
        if "audio" not in session.codecs:
            await session.close("talk-back needs audio")
            raise BadSdp("talk-back offer has no Opus audio")
        action = await self._actions.running_for_unit(unit_id)
        talk = Talk(session.id, unit_id, person.username, action.id if action else None, self._clock(), session, [])
        self.talks[talk.id] = talk
        await self._audit.append(person.username, "talk.started", talk.id, unit_id=unit_id,
                                 action_id=talk.action_id, case_number=action.case_number if action else None)
        await self._emit_unit(unit_id, "talk", {"talk_id": talk.id, "from": person.username})
        return talk.id, answer

    async def join(self, unit_id: str, talk_id: str, offer_sdp: str) -> str:
        talk = self.talks.get(talk_id)
        if talk is None or talk.unit_id != unit_id:
            raise NotFound(f"no talk {talk_id!r} for unit {unit_id!r}", code="unknown_talk")
        try:
            viewer, answer = await self._media.watch(unit_id, self.channel_id(unit_id), offer_sdp, _listener_ended,
                                                     f"unit:{unit_id}")
        except (SdpError, CodecMismatch) as exc:
            raise BadSdp(str(exc)) from exc
        talk.listeners.append(viewer)
        return answer

    async def call_back(self, unit_id: str, instruction_id: str | None) -> None:
        """The unit calls the command room back (回呼, a ``callback`` instruction or the officer's
        own wish): operators are told to listen to it (its audio is in its published stream) and
        can answer with talk-back."""
        action = await self._actions.running_for_unit(unit_id)
        event = {"unit_id": unit_id, "instruction_id": instruction_id, "at": iso_seconds(self._clock()),
                 "action_id": action.id if action else None, "case_number": action.case_number if action else None}
        await self._audit.append(f"unit:{unit_id}", "talk.callback", unit_id, instruction_id=instruction_id,
                                 action_id=event["action_id"], case_number=event["case_number"])
        await self._emit_operators("unit_callback", event)

    async def stop(self, unit_id: str, talk_id: str, person: Person) -> None:
        talk = self.talks.get(talk_id)
        if talk is None or talk.unit_id != unit_id:
            raise NotFound(f"no talk {talk_id!r} for unit {unit_id!r}", code="unknown_talk")
        if talk.operator != person.username and person.role != "admin":
            raise Forbidden("that talk session belongs to someone else")
        await talk.publisher.close("ended by the operator")

    def _ended(self, session: HostedPublisher, reason: str) -> None:
        talk = self.talks.pop(session.id, None)
        if talk is None:
            return

        async def finish() -> None:
            for viewer in talk.listeners:
                await viewer.close("talk ended")
            await self._emit_unit(talk.unit_id, "talk_end", {"talk_id": talk.id, "reason": reason})
            await self._audit.append(talk.operator, "talk.ended", talk.id, unit_id=talk.unit_id,
                                     action_id=talk.action_id, reason=reason,
                                     duration_s=round(self._clock() - talk.started_at, 1))

        task = asyncio.ensure_future(finish())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for talk in list(self.talks.values()):
            await talk.publisher.close("server shutting down")
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)

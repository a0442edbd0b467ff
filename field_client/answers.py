"""The unit's answers to instructions, sent in order over whatever link is up.

An answer (``acknowledged``, ``done``, ``refused``) is queued the moment the officer gives it or a
machine order finishes. :meth:`AnswerOutbox.drain` sends the queue over one link until the
attempt that owns the link cancels it; an answer the link could not deliver stays at the head of
the queue and goes out on the next link. Answers the server already holds (a restart replays
one) are dropped, as are answers it refuses outright (logged).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import LinkError
from .link import ACK_TIMEOUT

logger = logging.getLogger(__name__)

HARMLESS = {"already_in_state", "bad_transition"}  # the server already has this answer, or a later one
STATE_TEXT = {"acknowledged": "已确认 acknowledged", "done": "已完成 done", "refused": "已拒绝 refused"}


class AnswerLink(Protocol):
    async def call(self, event: str, data: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Answer:
    instruction_id: str
    state: str  # acknowledged | done | refused
    reason: str | None = None
    result: dict[str, Any] = field(default_factory=dict)

    def message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"id": self.instruction_id, "state": self.state}
        if self.reason:
            msg["reason"] = self.reason
        if self.result:
            msg["result"] = self.result
        return msg


class AnswerOutbox:
    def __init__(self, unit_id: str) -> None:
        self.unit_id = unit_id
        self._queue: deque[Answer] = deque()
        self._pending = asyncio.Event()
        self.sent: list[Answer] = []  # what the server took, in order (for the terminal and tests)

    def report(self, answer: Answer) -> None:
        self._queue.append(answer)
        self._pending.set()

    def __len__(self) -> int:
        return len(self._queue)

    async def drain(self, link: AnswerLink) -> None:
        """Send queued answers over ``link`` for as long as the caller lets it run."""
        while True:
            await self._pending.wait()
            while self._queue:
                answer = self._queue[0]
                try:
                    await link.call("instruction_state", answer.message())
                except LinkError as exc:
                    if exc.code is None or exc.code == ACK_TIMEOUT:
                        raise  # the link is going: the answer stays queued for the next one
                    if exc.code not in HARMLESS:
                        logger.warning("unit %s: answer %s to %s refused by the server: %s", self.unit_id,
                                       answer.state, answer.instruction_id, exc)
                else:
                    self.sent.append(answer)
                    logger.info("unit %s: instruction %s %s", self.unit_id, answer.instruction_id,
                                STATE_TEXT.get(answer.state, answer.state))
                self._queue.popleft()
            self._pending.clear()

"""Stills from a unit's camera into the evidence archive: what a ``snapshot`` instruction yields.

A unit uploads a JPEG (``POST /api/units/{unit_id}/snapshots``, parsed at the edge into a
:class:`NewSnapshot`). The still is linked to a case: to the action and case of the instruction
it answers when that instruction had one, else to the action running for the unit now (or to
none). The archive (:meth:`recordings.archive.ArchiveService.seal_snapshot`, a port) stores it
durably and ledgers it; operators then hear of it (``push``, the ``snapshot`` event).

Constructed only when the evidence archive is enabled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from recordings.snapshots import SnapshotError, StillInfo, is_jpeg

from .actions import ActionStore
from .errors import NotFound, Unavailable, UnsupportedMediaType
from .instructions import InstructionService

logger = logging.getLogger(__name__)

Seal = Callable[[StillInfo, bytes, str, str], Awaitable[dict[str, Any]]]  # (info, jpeg, actor, where) -> entry data
PushSnapshot = Callable[[dict[str, Any]], Awaitable[None]]

VIEW_KEYS = ("snapshot_id", "sha256", "bytes", "unit_id", "action_id", "case_number", "instruction_id", "taken_at",
             "received_at")


def snapshot_url(snapshot_id: str) -> str:
    return f"/api/snapshots/{snapshot_id}"


def snapshot_view(data: dict[str, Any]) -> dict[str, Any]:
    """What the uploader, the ``snapshot`` push and the list show of a still (from its ledger data)."""
    return {k: data.get(k) for k in VIEW_KEYS} | {"url": snapshot_url(str(data["snapshot_id"]))}


@dataclass(frozen=True)
class NewSnapshot:
    """An upload, checked at the edge: the unit proved its token, the body is within the limit."""

    unit_id: str
    jpeg: bytes
    instruction_id: str | None
    taken_at: float | None  # the device's clock, POSIX seconds
    origin: str  # ``where`` of the ledger entry, e.g. ``http:10.0.0.7``


class SnapshotService:
    def __init__(self, seal: Seal, actions: ActionStore, instructions: InstructionService,
                 push: PushSnapshot) -> None:
        self._seal = seal
        self._actions = actions
        self._instructions = instructions
        self._push = push

    async def store(self, new: NewSnapshot) -> dict[str, Any]:
        """Archive the still; its view (:func:`snapshot_view`) once it is durable and in the ledger.

        404 ``unknown_instruction`` for an instruction that was not sent to this unit, 415 for
        anything but a JPEG, 503 ``disk_full`` / ``archive_unavailable`` when the archive cannot
        take it (nothing is stored then).
        """
        if not is_jpeg(new.jpeg):
            raise UnsupportedMediaType("a still must be a JPEG (the body does not start with FF D8 FF)",
                                       code="not_jpeg")
        action_id, case_number = await self._link(new.unit_id, new.instruction_id)
        info = StillInfo(new.unit_id, action_id, case_number, new.instruction_id, new.taken_at)
        try:
            data = await self._seal(info, new.jpeg, f"unit:{new.unit_id}", new.origin)
        except SnapshotError as exc:
            logger.error("unit %s: still not stored: %s", new.unit_id, exc)
            if exc.disk_full:
                raise Unavailable("the evidence archive's disk is full: the still was not stored; try again later",
                                  code="disk_full") from exc
            raise Unavailable(f"the evidence archive cannot store the still now: {exc}",
                              code="archive_unavailable") from exc
        view = snapshot_view(data)
        try:
            await self._push(view)
        except Exception:  # the still is stored; a console that missed the push finds it in the list
            logger.exception("unit %s: snapshot push failed", new.unit_id)
        return view

    async def _link(self, unit_id: str, instruction_id: str | None) -> tuple[str | None, str | None]:
        """(action id, case number) the still belongs to."""
        if instruction_id is not None:
            ins = await self._instructions.get(instruction_id)  # 404 unknown_instruction
            if ins.unit_id != unit_id:
                raise NotFound(f"instruction {instruction_id!r} was never sent to unit {unit_id!r}",
                               code="unknown_instruction")
            if ins.action_id is not None:
                return ins.action_id, ins.case_number
        action = await self._actions.running_for_unit(unit_id)
        return (action.id, action.case_number) if action is not None else (None, None)

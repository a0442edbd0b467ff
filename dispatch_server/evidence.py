"""The evidence archive's ports: what :class:`recordings.archive.ArchiveService` asks of the server,
and how the server tells it that an action changed.

The archive is a library below the server; it knows units, not actions or alerts. It asks:

- ``action_for(unit)``: the action a recording of that unit belongs to (id, case number, officers,
  retention category) — the action running now, if any;
- ``alarm(kind, message, detail)``: tell operators (disk full, recording resumed, ...);
- ``describe(unit, since, until)``: what ``recording.json`` holds besides the media — the unit's
  GPS track and the instructions it was sent while recording.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from geo.gpx import track_geojson
from geo.track import TrackStore
from recordings.archive import ActionContext, ArchiveService

from .actions import Action, ActionStore
from .alerts import AlertService
from .config import ArchiveConfig
from .instructions import InstructionService

logger = logging.getLogger(__name__)

PushOperators = Callable[[str, dict[str, Any]], Awaitable[None]]


class EvidencePorts:
    def __init__(self, config: ArchiveConfig, actions: ActionStore, alerts: AlertService, push: PushOperators,
                 tracks: TrackStore, instructions: InstructionService, clock: Callable[[], float] = time.time) -> None:
        self._categories = {r.category for r in config.retention}
        self._default_category = config.default_category
        self._actions = actions
        self._alerts = alerts
        self._push = push
        self._tracks = tracks
        self._instructions = instructions
        self._clock = clock

    async def action_for(self, unit_id: str) -> ActionContext:
        action = await self._actions.running_for_unit(unit_id)
        if action is None:
            return ActionContext(None, None, (), self._default_category)
        category = action.type if action.type in self._categories else self._default_category
        return ActionContext(action.id, action.case_number, action.officers, category)

    async def alarm(self, kind: str, message: str, detail: dict[str, Any]) -> None:
        # The archive may share a full disk with the database: operators hear of it even when
        # the alert cannot be stored.
        try:
            await self._alerts.raise_alert(kind, "archive", message, params=alarm_params(detail))
        except Exception as exc:
            logger.error("alert %s not stored (%s); sent to operators anyway", kind, exc)
            await self._push("alert", {"id": None, "kind": kind, "code": kind, "params": alarm_params(detail),
                                       "unit_id": "archive", "message": message,
                                       "state": "open", "created_at": self._clock(), "detail": detail})

    async def describe(self, unit_id: str, since: float, until: float) -> dict[str, Any]:
        points = await asyncio.to_thread(self._tracks.query, unit_id, since - 1.0, until + 1.0, 200_000)
        sent = [i.view() for i in await self._instructions.list(unit=unit_id, limit=1000)
                if since - 1.0 <= i.created_at <= until]
        return {"gps_track": track_geojson(unit_id, [p.fix for p in points]),
                "instructions": sorted(sent, key=lambda v: v["seq"])}


def alarm_params(detail: dict[str, Any]) -> dict[str, Any]:
    """What the console's text of an archive alarm names: ``cause`` (disk_full, fault), free bytes."""
    return {k: detail[k] for k in ("cause", "free_bytes", "units") if k in detail}


class ArchiveActions:
    """An action listener: recordings of the team's units follow the action (it started or ended)."""

    def __init__(self, archive: ArchiveService) -> None:
        self._archive = archive

    async def action_changed(self, action: Action) -> None:
        await self._archive.action_changed(action.units)

"""Positions of units: ingest of GPS fixes, the durable track, live latest position, staleness,
geofences of running actions and nearest-unit search.

Fixes arrive in batches (msgpack over ``/unit``) with the device's own timestamps, possibly
back-filled after a link loss. Each valid fix is stored in the track (duplicates by unit and
time are ignored) linked to the action running for the unit; only a fix newer than the unit's
latest moves its live position. Geofence crossings of a running action's area become alerts and
audit entries, once per crossing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from geo.fix import Fix, FixError, parse_fix
from geo.geofence import Geofence, GeofenceError, GeofenceWatcher
from geo.track import TrackPoint, TrackStore

from .actions import Action, ActionService
from .alerts import AlertService
from .audit import AuditTrail
from .errors import BadRequest
from .geo_index import MemoryPositionIndex, PositionIndex
from .roster import Roster

logger = logging.getLogger(__name__)

MAX_BATCH = 500
STALE_SWEEP_S = 2.0


class PositionService:
    def __init__(self, tracks: TrackStore, roster: Roster, actions: ActionService, alerts: AlertService,
                 audit: AuditTrail, unit_actions: Callable[[], Awaitable[dict[str, tuple[str, str]]]],
                 stale_after_s: float, index: PositionIndex | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.tracks = tracks
        self._roster = roster
        self._actions = actions
        self._alerts = alerts
        self._audit = audit
        self._unit_actions = unit_actions
        self.stale_after_s = stale_after_s
        self._clock = clock
        self.index: PositionIndex = index or MemoryPositionIndex()
        self._latest: dict[str, Fix] = {}
        self._stale: set[str] = set()
        self._fences: dict[str, tuple[str, GeofenceWatcher]] = {}  # action id -> (area repr, watcher)
        self._task: asyncio.Task[None] | None = None
        self.rejected = 0  # fixes refused since start (reported by /healthz)

    async def ingest(self, unit_id: str, raw_fixes: Any) -> dict[str, Any]:
        """Validate, store and apply a batch; answer counts and per-fix errors."""
        if not isinstance(raw_fixes, list):
            raise BadRequest("positions: expected a list of fixes", code="bad_message")
        if len(raw_fixes) > MAX_BATCH:
            raise BadRequest(f"positions: {len(raw_fixes)} fixes in one batch; the limit is {MAX_BATCH}",
                             code="bad_message")
        now = self._clock()
        fixes: list[Fix] = []
        rejected = []
        for i, raw in enumerate(raw_fixes):
            try:
                fixes.append(parse_fix(raw, now))
            except FixError as exc:
                rejected.append({"index": i, "error": str(exc)})
        self.rejected += len(rejected)
        link = (await self._unit_actions()).get(unit_id)
        points = [TrackPoint(unit_id, f, link[0] if link else None, link[1] if link else None) for f in fixes]
        result = await asyncio.to_thread(self.tracks.insert_many, points) if points else None
        fixes.sort(key=lambda f: f.ts)
        if fixes:
            latest = self._latest.get(unit_id)
            newest = fixes[-1]
            if latest is None or newest.ts > latest.ts:
                self._latest[unit_id] = newest
                await self.index.update(unit_id, newest.lat, newest.lon)
                self._stale.discard(unit_id)
                await self._roster.mark(unit_id, position=newest.as_dict())
            if link is not None:
                await self._check_fence(unit_id, link[0], fixes)
        if rejected:
            logger.info("unit %s: %d of %d fixes rejected, first: %s", unit_id, len(rejected), len(raw_fixes),
                        rejected[0]["error"])
        return {"ok": True, "accepted": result.inserted if result else 0,
                "duplicates": result.duplicates if result else 0, "rejected": rejected}

    async def _check_fence(self, unit_id: str, action_id: str, fixes: list[Fix]) -> None:
        action = await self._actions.get(action_id)
        if action.area is None:
            return
        key = repr(action.area)
        entry = self._fences.get(action_id)
        if entry is None or entry[0] != key:
            try:
                entry = (key, GeofenceWatcher(Geofence.from_area(action.area)))
            except GeofenceError as exc:
                logger.warning("action %s: area is not a usable geofence: %s", action_id, exc)
                return
            self._fences[action_id] = entry
        watcher = entry[1]
        for fix in fixes:
            event = watcher.feed(unit_id, fix)
            if event is not None:
                await self._crossed(action, unit_id, event.kind, fix)

    async def _crossed(self, action: Action, unit_id: str, kind: str, fix: Fix) -> None:
        verb = "left" if kind == "exit" else "entered"
        await self._alerts.raise_alert(
            f"geofence_{kind}", unit_id, f"unit {unit_id} {verb} the area of action {action.case_number}",
            action_id=action.id, case_number=action.case_number, position=fix.as_dict(), dedupe=False,
        )
        await self._audit.append(f"unit:{unit_id}", f"action.geofence_{kind}", action.id, unit_id=unit_id,
                                 case_number=action.case_number, lat=fix.lat, lon=fix.lon, ts=fix.ts)

    def fix_age_s(self, unit_id: str) -> float | None:
        latest = self._latest.get(unit_id)
        return None if latest is None else max(0.0, self._clock() - latest.ts)

    async def nearest(self, lat: float, lon: float, k: int, available: bool) -> list[dict[str, Any]]:
        busy = set(await self._unit_actions()) if available else set()
        presence = await self._roster.presence.all()

        def ok(unit_id: str) -> bool:
            if unit_id in busy:
                return False
            p = presence.get(unit_id)
            return p is not None and p.online if available else True

        running = await self._unit_actions()
        out = []
        for unit_id, dist, (ulat, ulon) in await self.index.nearest(lat, lon, k, ok):
            p = presence.get(unit_id)
            out.append({"id": unit_id, "distance_m": round(dist, 1),
                        "position": p.position if p and p.position else {"lat": ulat, "lon": ulon},
                        "publishing": bool(p and p.publishing), "action_id": running.get(unit_id, (None,))[0]})
        return out

    # staleness -----------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sweep(), name="position-stale-sweep")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(STALE_SWEEP_S)
            now = self._clock()
            for unit_id, fix in list(self._latest.items()):
                if unit_id not in self._stale and now - fix.ts > self.stale_after_s:
                    self._stale.add(unit_id)
                    try:
                        await self._roster.announce(unit_id)
                    except Exception:
                        logger.exception("unit %s: stale announcement failed", unit_id)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.to_thread(self.tracks.close)
        await self.index.close()

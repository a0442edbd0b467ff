"""Positions of units: ingest of GPS fixes, the durable track, live latest position, staleness,
geofences of running actions and nearest-unit search.

Fixes arrive in batches (msgpack over the telemetry channel, :mod:`dispatch_server.telemetry`,
or Socket.IO ``/unit``) with the device's own timestamps, possibly back-filled after a link loss.
Each valid fix is stored in the track (duplicates by unit and time are ignored) linked to the
action running for the unit, and the batch is acknowledged only once that is committed; only a
fix newer than the unit's latest moves its live position, at once, while the commit runs.
Geofence crossings of a running action's area become alerts and audit entries, once per crossing.

Built for thousands of units at 1 Hz in one process, so nothing is done once per fix that can be
done once per group of fixes: track inserts of all units are group-committed
(:class:`geo.track_writer.TrackWriter`), and live positions reach operators as one
``unit_positions`` list at most every :data:`FEED_INTERVAL_S` (:class:`PositionFeed`) rather than
as a ``unit_status`` event per fix. A full ``unit_status`` still goes out when a fix changes more
than the unit's place: its first fix (the unit appears on the map), and the first fix after it
was shown stale.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from geo.fix import Fix, FixError, parse_fix
from geo.geofence import Geofence, GeofenceError, GeofenceWatcher
from geo.track import TrackPoint, TrackStore
from geo.track_writer import DEFAULT_INTERVAL_S, TrackWriter

from .actions import Action, ActionStore
from .alerts import AlertService
from .audit import AuditTrail
from .errors import BadRequest
from .metrics import Metrics
from .position_feed import FEED_INTERVAL_S, PositionFeed, PushPositions
from .roster import Roster
from .running_actions import RunningActions
from .stores.position_index import PositionIndex

logger = logging.getLogger(__name__)

MAX_BATCH = 500
STALE_SWEEP_S = 2.0
ACTION_TTL_S = 1.0  # an action's area is re-read this often at most (the running-action map is as old)
Moved = Callable[[str, str, Fix], Awaitable[None]]  # (unit, its running action, its newest fix)

class PositionService:
    """Ingest of units' fixes and everything that follows from them (see the module docstring)."""

    def __init__(self, tracks: TrackStore, roster: Roster, actions: ActionStore, alerts: AlertService,
                 audit: AuditTrail, unit_actions: RunningActions, stale_after_s: float, index: PositionIndex,
                 clock: Callable[[], float] = time.time, *, push_positions: PushPositions,
                 metrics: Metrics | None = None, moved: Moved | None = None,
                 commit_interval_s: float = DEFAULT_INTERVAL_S, feed_interval_s: float = FEED_INTERVAL_S) -> None:
        self.tracks = tracks
        self._writer = TrackWriter(tracks, commit_interval_s)
        self._metrics = metrics
        self._feed = PositionFeed(push_positions, stale_after_s, feed_interval_s, clock,
                                  pushed=metrics.fix_to_console_seconds.observe if metrics is not None else None)
        self._roster = roster
        self._actions = actions
        self._alerts = alerts
        self._audit = audit
        self._unit_actions = unit_actions
        self._moved = moved  # told the newest fix of each batch of a unit in a running action (流程预警)
        self.stale_after_s = stale_after_s
        self._clock = clock
        self.index = index
        self._latest: dict[str, Fix] = {}
        self._stale: set[str] = set()
        self._fences: dict[str, tuple[str, GeofenceWatcher]] = {}  # action id -> (area repr, watcher)
        self._action_cache: dict[str, tuple[float, Action]] = {}  # action id -> (monotonic time read, action)
        self._task: asyncio.Task[None] | None = None
        self.rejected = 0  # fixes refused since start (reported by /healthz)

    async def ingest(self, unit_id: str, raw_fixes: Any) -> dict[str, Any]:
        """Validate, store and apply a batch; answer counts and per-fix errors once it is committed."""
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
        stored = self._writer.submit(points) if points else None
        if fixes:
            # The live position and the geofence need not wait for the commit: operators see
            # the fix while it is being stored; only the unit's acknowledgement waits for it.
            fixes.sort(key=lambda f: f.ts)
            try:
                await self._move(unit_id, fixes[-1])
                if link is not None:
                    await self._check_fence(unit_id, link[0], fixes)
                    if self._moved is not None and self._latest.get(unit_id) is fixes[-1]:
                        await self._moved(unit_id, link[0], fixes[-1])  # a live fix, not a back-filled one
            except BaseException:
                if stored is not None:  # still committed; its outcome is not this caller's news
                    stored.add_done_callback(lambda f: f.cancelled() or f.exception())
                raise
        result = await stored if stored is not None else None
        if rejected:
            logger.info("unit %s: %d of %d fixes rejected, first: %s", unit_id, len(rejected), len(raw_fixes),
                        rejected[0]["error"])
        accepted, duplicates = (result.inserted, result.duplicates) if result else (0, 0)
        if self._metrics is not None:
            self._metrics.fixes.labels("accepted").inc(accepted)
            self._metrics.fixes.labels("duplicate").inc(duplicates)
            self._metrics.fixes.labels("rejected").inc(len(rejected))
        return {"ok": True, "accepted": accepted, "duplicates": duplicates, "rejected": rejected}

    async def _move(self, unit_id: str, newest: Fix) -> None:
        """Make ``newest`` the unit's live position if it is newer than the one it has."""
        latest = self._latest.get(unit_id)
        if latest is not None and newest.ts <= latest.ts:
            return
        self._latest[unit_id] = newest
        await self.index.update(unit_id, newest.lat, newest.lon)
        position = newest.as_dict()
        if latest is None or unit_id in self._stale:
            # First fix this node has seen, or back from stale: the whole view changes, say so now.
            self._stale.discard(unit_id)
            self._feed.discard(unit_id)
            await self._roster.mark(unit_id, position=position)
        else:
            seen = self._clock()
            await self._roster.move(unit_id, position, seen)
            self._feed.add(unit_id, position, newest.ts, seen)

    async def _action(self, action_id: str) -> Action | None:
        """The action, read from the store at most every ACTION_TTL_S (fixes of its units come at 1 Hz)."""
        now = time.monotonic()
        hit = self._action_cache.get(action_id)
        if hit is not None and now - hit[0] < ACTION_TTL_S:
            return hit[1]
        action = await self._actions.get(action_id)
        if action is None:
            return None
        if len(self._action_cache) > 256:
            self._action_cache = {k: v for k, v in self._action_cache.items() if now - v[0] < ACTION_TTL_S}
        self._action_cache[action_id] = (now, action)
        return action

    async def _check_fence(self, unit_id: str, action_id: str, fixes: list[Fix]) -> None:
        action = await self._action(action_id)
        if action is None or action.area is None:
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
            params={"title": action.title},
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
        await self._writer.close()
        await self._feed.close()
        await asyncio.to_thread(self.tracks.close)
        await self.index.close()

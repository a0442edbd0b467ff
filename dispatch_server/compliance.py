"""流程预警 live: the rules of procedure of every running action, checked as things happen.

The rules (``settings.procedure.rule_for(action.type)``, evaluated by
:func:`dispatch_server.procedure_rules.breaches`) are checked again whenever something they look
at changes: an action starts, changes or ends (an action listener), a unit connects, publishes or
stops (a roster watcher), the archive pauses or resumes a recording (an archive listener), a team
unit sends a fix (from the position service), the notice is marked, and the notice timer of an
action fires (one timer per running action that needs a notice, cancelled when the notice is
marked or the action ends, and by :meth:`close`).

A unit *records* when it publishes and the archive records it
(:meth:`recordings.archive.ArchiveService.recording_now`; with the archive disabled, publishing
is enough).

A rule that breaks opens a :class:`~dispatch_server.procedure_breaks.ProcedureBreak`, written
with its audit entry (``procedure.break_opened``, subject the action) in one transaction, and
raises one alert ``procedure_<rule>`` (never again for the same open break); the break closes
(``procedure.break_closed``) when the rule holds again or the action ends. Consoles get
``action_procedure`` (the action's compliance now) after every change, for the wall's badges.

A planned stop (:class:`~dispatch_server.stopping.Stopping`) opens nothing: everything it does to
units is on purpose. After a start with actions running, their units need a moment to come back:
for :data:`SETTLE_S` breaks only close; then every running action is checked in full.

State is kept per node (the open breaks are re-read from the store at start); with several nodes,
each checks the units it sees.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from geo.fix import Fix
from geo.geofence import Geofence, GeofenceError
from recordings.archive import ArchiveService
from utctime import iso_millis

from .actions import Action, ActionStore
from .alerts import AlertService
from .audit import AuditTrail
from .config import ProcedureConfig
from .errors import Conflict
from .procedure_breaks import Notice, ProcedureBreak, ProcedureBreakStore
from .procedure_rules import Key, TeamState, breaches, notice_due
from .running_actions import RunningActions
from .stopping import Stopping
from .stores.presence import Presence, PresenceStore

logger = logging.getLogger(__name__)

TIMER_SLACK_S = 0.05
SETTLE_S = 15.0  # after a start with running actions: units reconnect and publish again meanwhile
RULE_TEXT = {  # the English sentence of an alert and a statement, by rule
    "min_recorders": "fewer recorders running than required",
    "record_before_start": "not recording when the action started",
    "stay_in_area": "outside the action's area",
    "notice": "spoken notice not marked in time",
}

Emit = Callable[[dict[str, Any]], Awaitable[None]]


class ComplianceWatch:
    def __init__(self, actions: ActionStore, rules: ProcedureConfig, breaks: ProcedureBreakStore,
                 alerts: AlertService, audit: AuditTrail, stopping: Stopping, presence: PresenceStore,
                 running: RunningActions, emit: Emit, clock: Callable[[], float] = time.time,
                 settle_s: float = SETTLE_S) -> None:
        self._actions = actions
        self._rules = rules
        self.breaks = breaks
        self._alerts = alerts
        self._audit = audit
        self._stopping = stopping
        self._presence = presence
        self._running = running
        self._emit = emit
        self._archive: ArchiveService | None = None
        self._clock = clock
        self._settle_s = settle_s
        self._settled = True
        self._open: dict[str, dict[Key, ProcedureBreak]] = {}  # running action id -> its open breaks
        self._known: dict[str, Action] = {}  # running actions as last checked
        self._fences: dict[str, tuple[str, Geofence | None]] = {}  # action id -> (area repr, fence)
        self._locks: dict[str, asyncio.Lock] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}  # action id -> its notice timer
        self._tasks: set[asyncio.Task[None]] = set()

    # lifecycle ---------------------------------------------------------------------------
    async def start(self, archive: ArchiveService | None = None) -> None:
        """Take up the running actions: their open breaks, their notice timers, and after
        ``settle_s`` a full check. With ``archive``, a unit records only when the archive records
        it, its pauses are followed, and notices go into its ledger."""
        if archive is not None:
            self._archive = archive
            archive.listeners.append(self.archive_event)
        for brk in await self.breaks.open_breaks():
            self._open.setdefault(brk.action_id, {})[(brk.rule, brk.unit_id)] = brk
        running = await self._actions.list("running")
        for action in running:
            self._known[action.id] = action
            self._open.setdefault(action.id, {})
            await self._arm_notice(action)
        if running and self._settle_s > 0:
            self._settled = False
            loop = asyncio.get_running_loop()
            self._timers["*settle"] = loop.call_later(self._settle_s, lambda: self._spawn(self._settle()))

    async def close(self) -> None:
        if self._archive is not None and self.archive_event in self._archive.listeners:
            self._archive.listeners.remove(self.archive_event)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("procedure check failed: %r", task.exception())

    async def _settle(self) -> None:
        self._timers.pop("*settle", None)
        self._settled = True
        for action_id in list(self._known):
            await self.check(action_id, push=True)

    # events ------------------------------------------------------------------------------
    async def action_changed(self, action: Action) -> None:
        """An action listener: a start is checked at once (``record_before_start`` too); an end
        closes every open break of the action at its end."""
        if action.state == "running":
            starting = action.id not in self._known
            self._known[action.id] = action
            self._open.setdefault(action.id, {})
            if starting:
                await self._arm_notice(action)
            await self.check(action.id, starting=starting, action=action)
        elif action.id in self._known or self._open.get(action.id):
            await self._finish(action)

    async def unit_changed(self, before: Presence | None, after: Presence) -> None:
        """A roster watcher: a unit that connected, published or stopped changes who records."""
        if before is not None and (before.publishing, before.connected) == (after.publishing, after.connected):
            return
        link = (await self._running()).get(after.unit_id)
        if link is not None:
            await self.check(link[0])

    def archive_event(self, kind: str, detail: dict[str, Any]) -> None:
        """An archive listener: a recording paused, resumed, failed or closed changes who records."""
        if kind in ("disk_full", "resumed", "error", "closed") and self._known:
            for action_id in list(self._known):
                self._spawn(self.check(action_id))

    async def moved(self, unit_id: str, action_id: str, fix: Fix) -> None:
        """A team unit's newest fix (the position service, thousands a second across units): the
        action is checked only when the unit crossed its area's edge as far as this node knows."""
        action = self._known.get(action_id)
        if action is None or not self._rules.rule_for(action.type).stay_in_area:
            return
        fence = self._fence(action)
        if fence is None:
            return
        outside = not fence.contains(fix.lat, fix.lon)
        if outside != (("stay_in_area", unit_id) in self._open.get(action_id, {})):
            await self.check(action_id, fixes={unit_id: (fix.lat, fix.lon)})

    # the notice --------------------------------------------------------------------------
    async def mark_notice(self, unit_id: str, officer: str | None) -> Notice:
        """The officer on ``unit_id`` marked the spoken notice of its running action: recorded with
        its audit entry and a ``notice_marked`` ledger entry; the notice rule holds from now on.
        ``409 not_in_running_action`` when the unit is in no running action. A second mark keeps
        the first."""
        action = await self._actions.running_for_unit(unit_id)
        if action is None:
            raise Conflict(f"unit {unit_id} is not in a running action: there is no notice to mark",
                           code="not_in_running_action")
        marked_by = officer or f"unit:{unit_id}"
        notice = Notice(action.id, self._clock(), marked_by, unit_id)
        notice, new = await self.breaks.mark_notice(notice, also=lambda c: self._audit.append_sync(
            c, f"unit:{unit_id}", "procedure.notice_marked", action.id, case_number=action.case_number,
            unit_id=unit_id, marked_by=marked_by))
        if not new:
            return notice
        timer = self._timers.pop(action.id, None)
        if timer is not None:
            timer.cancel()
        if self._archive is not None and not self._archive.refused:
            try:
                await self._archive.record("notice_marked", actor=f"unit:{unit_id}", where="dispatch", data={
                    "action_id": action.id, "case_number": action.case_number, "unit_id": unit_id,
                    "marked_by": marked_by, "notice_at": iso_millis(notice.notice_at)})
            except Exception as exc:  # the notice stands in the database and the audit trail
                logger.error("unit %s: notice of action %s not in the ledger: %r", unit_id, action.id, exc)
        logger.info("unit %s: notice of action %s marked by %s", unit_id, action.id, marked_by)
        await self.check(action.id, push=True)
        return notice

    async def _arm_notice(self, action: Action) -> None:
        due = notice_due(self._rules.rule_for(action.type), action.started_at or self._clock())
        if due is None or action.id in self._timers or await self.breaks.notice(action.id) is not None:
            return
        # The loop's timers run on another clock than ``clock``: a little late rather than early.
        delay = max(0.0, due - self._clock()) + TIMER_SLACK_S
        # The coroutine is made when the timer fires: a cancelled timer leaves none unawaited.
        self._timers[action.id] = asyncio.get_running_loop().call_later(
            delay, lambda: self._spawn(self._notice_due(action.id)))

    async def _notice_due(self, action_id: str) -> None:
        self._timers.pop(action_id, None)
        await self.check(action_id)
        action = self._known.get(action_id)
        if action is not None and ("notice", None) not in self._open.get(action_id, {}):
            await self._arm_notice(action)  # not due yet after all (a clock that moved): wait again

    # the check ---------------------------------------------------------------------------
    def _fence(self, action: Action) -> Geofence | None:
        key = repr(action.area)
        hit = self._fences.get(action.id)
        if hit is not None and hit[0] == key:
            return hit[1]
        fence: Geofence | None = None
        if action.area is not None:
            try:
                fence = Geofence.from_area(action.area)
            except GeofenceError as exc:
                logger.warning("action %s: area is not usable for stay_in_area: %s", action.id, exc)
        self._fences[action.id] = (key, fence)
        return fence

    def _lock(self, action_id: str) -> asyncio.Lock:
        return self._locks.setdefault(action_id, asyncio.Lock())

    async def check(self, action_id: str, *, starting: bool = False, action: Action | None = None,
                    fixes: dict[str, tuple[float, float]] | None = None, push: bool = False) -> None:
        """Check every rule of a running action now: open what broke, close what holds again;
        consoles are told when that changed anything, at the start, or when ``push``."""
        if self._stopping.planned:
            return
        async with self._lock(action_id):
            if action is None:
                action = await self._actions.get(action_id)
            if action is None or action.state != "running":
                return
            self._known[action.id] = action
            rule = self._rules.rule_for(action.type)
            now = self._clock()
            presence = {u: await self._presence.get(u) for u in action.units}
            positions = {u: (p.position["lat"], p.position["lon"]) for u, p in presence.items()
                         if p is not None and isinstance(p.position, dict) and "lat" in p.position}
            positions.update(fixes or {})
            notice = await self.breaks.notice(action.id) if rule.notice_within_s > 0 else None
            is_open = self._open.setdefault(action.id, {})
            team = TeamState(
                units=action.units, recording=frozenset(u for u, p in presence.items() if self._records(u, p)),
                positions=positions, started_at=action.started_at or now, now=now,
                notice_at=notice.notice_at if notice else None,
                missing_at_start=frozenset(u for r, u in is_open if r == "record_before_start" and u))
            wanted = breaches(rule, team, self._fence(action), starting=starting)
            changed = False
            for key, brk in list(is_open.items()):
                if key not in wanted:
                    ended = notice.notice_at if key[0] == "notice" and notice else now
                    await self._close(action, brk, ended)
                    del is_open[key]
                    changed = True
            if self._settled or starting:
                for key, detail in wanted.items():
                    if key not in is_open:
                        at = (action.started_at or now) if starting else now
                        if key[0] == "notice":
                            at = team.started_at + rule.notice_within_s
                        is_open[key] = await self._open_break(action, key, at, detail)
                        changed = True
            if changed or starting or push:
                await self._push(action)

    def _records(self, unit_id: str, p: Presence | None) -> bool:
        if p is None or not p.publishing:
            return False
        return self._archive.recording_now(unit_id) if self._archive is not None else True

    async def _open_break(self, action: Action, key: Key, at: float, detail: dict[str, Any]) -> ProcedureBreak:
        rule, unit_id = key
        brk, new = await self.breaks.open(action.id, rule, unit_id, at, detail, also=lambda c: self._audit.append_sync(
            c, "system", "procedure.break_opened", action.id, case_number=action.case_number, rule=rule,
            unit_id=unit_id, **detail))
        if not new:
            return brk
        missing = detail.get("missing") or []
        alert_unit = unit_id or (missing[0] if missing else (action.units[0] if action.units else ""))
        who = f"unit {unit_id}" if unit_id else f"action {action.case_number}"
        try:
            await self._alerts.raise_alert(
                f"procedure_{rule}", alert_unit, f"{who}: {RULE_TEXT[rule]} ({action.case_number})",
                action_id=action.id, case_number=action.case_number, dedupe=False,
                params={"title": action.title, "break_id": brk.id, "rule": rule, **detail})
        except Exception:
            logger.exception("action %s: alert for rule break %s failed", action.id, brk.id)
        logger.warning("action %s: rule %s broken (unit %s): %s", action.id, rule, unit_id, detail)
        return brk

    async def _close(self, action: Action, brk: ProcedureBreak, ended_at: float) -> None:
        await self.breaks.close(brk.id, ended_at, also=lambda c: self._audit.append_sync(
            c, "system", "procedure.break_closed", action.id, case_number=action.case_number, rule=brk.rule,
            unit_id=brk.unit_id, break_id=brk.id))
        logger.info("action %s: rule %s holds again (unit %s)", action.id, brk.rule, brk.unit_id)

    async def _finish(self, action: Action) -> None:
        timer = self._timers.pop(action.id, None)
        if timer is not None:
            timer.cancel()
        async with self._lock(action.id):
            ended = action.ended_at or self._clock()
            for brk in (self._open.pop(action.id, {})).values():
                await self._close(action, brk, ended)
            self._known.pop(action.id, None)
            self._fences.pop(action.id, None)
        self._locks.pop(action.id, None)
        await self._push(action)

    # what consoles see -------------------------------------------------------------------
    async def compliance(self, action: Action) -> dict[str, Any]:
        """The action's compliance now: its open breaks, every break so far, its notice and rule."""
        breaks = await self.breaks.for_action(action.id)
        notice = await self.breaks.notice(action.id)
        rule = self._rules.rule_for(action.type)
        open_ = [b.view() for b in breaks if b.open] if action.state == "running" else []
        return {"action_id": action.id, "case_number": action.case_number, "state": action.state,
                "compliant": not open_, "open": open_, "breaks": [b.view() for b in breaks],
                "notice": notice.view() if notice else None,
                "rule": {"type": rule.type, "min_recorders": rule.min_recorders,
                         "record_before_start": rule.record_before_start, "stay_in_area": rule.stay_in_area,
                         "notice_within_s": rule.notice_within_s}}

    async def markers(self, action_id: str | None, opened: float, end: float) -> list[dict[str, Any]]:
        """What a recording's timeline marks (a recording of the action opened at ``opened`` and
        running to ``end``): the spoken notice, at ``t`` seconds on the timeline, when it falls
        within it."""
        notice = await self.breaks.notice(action_id) if action_id else None
        if notice is None or not opened <= notice.notice_at <= end:
            return []
        return [{"kind": "notice", "t": round(notice.notice_at - opened, 3), "at": iso_millis(notice.notice_at),
                 "marked_by": notice.marked_by, "unit_id": notice.unit_id}]

    async def _push(self, action: Action) -> None:
        try:
            await self._emit(await self.compliance(action))
        except Exception as exc:
            logger.warning("action %s: compliance not pushed: %r", action.id, exc)


"""流程预警: a unit of a running action that drops out, raised as an alert at once.

The rules of procedure of each action type (recorders at once, recording before the start, the
area, the notice) are checked by :mod:`dispatch_server.compliance`; this watcher keeps the
simplest rule: a unit of a running action must stay connected and keep its video up. When it
goes offline (``unit_offline``) or stops publishing while still connected
(``stopped_publishing``), the command room is alerted with the unit, the action and the last
known position. Alerts of one kind are not repeated for a unit while one is open. A planned stop of
the server (:mod:`dispatch_server.stopping`) takes every unit offline on purpose: no alert then.
"""

from __future__ import annotations

from utctime import iso_seconds

from .actions import ActionStore
from .alerts import AlertService
from .stopping import Stopping
from .stores.presence import Presence


class ProcedureWatch:
    """A roster watcher (see :class:`dispatch_server.roster.Roster`): told every change of a unit's state."""

    def __init__(self, actions: ActionStore, alerts: AlertService, stopping: Stopping) -> None:
        self._actions = actions
        self._alerts = alerts
        self._stopping = stopping

    async def unit_changed(self, before: Presence | None, after: Presence) -> None:
        if before is None or self._stopping.planned:
            return
        lost = before.online and not after.online
        stopped = before.publishing and not after.publishing and after.connected
        if not (lost or stopped):
            return
        action = await self._actions.running_for_unit(after.unit_id)
        if action is None:
            return
        last_seen = {"last_seen": iso_seconds(after.last_seen)}
        if lost:
            await self._alerts.raise_alert("unit_offline", after.unit_id,
                                           f"unit {after.unit_id} of action {action.case_number} went offline",
                                           action_id=action.id, case_number=action.case_number,
                                           position=after.position, params=last_seen)
        else:
            await self._alerts.raise_alert("stopped_publishing", after.unit_id,
                                           f"unit {after.unit_id} of action {action.case_number} stopped sending video",
                                           action_id=action.id, case_number=action.case_number,
                                           position=after.position, params=last_seen)

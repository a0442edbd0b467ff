"""The roster operators see: registered units joined with their presence, pushed live.

Every change of a unit's state goes through :meth:`Roster.mark`, which stores it and emits one
``unit_status`` event to the operators' room (through Redis to every node in Redis mode), except
a new position of a unit already shown where it is: :meth:`Roster.move` stores it quietly, and
the position service pushes such moves in batches.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable, Iterable, Sequence

from utctime import iso_seconds, parse_iso

from .actions import Action
from .links import UnitLinks
from .stores.accounts import Accounts, UnitRecord
from .stores.presence import Presence, PresenceStore

logger = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], Awaitable[None]]
Watcher = Callable[[Presence | None, Presence], Awaitable[None]]
UnitActions = Callable[[], Awaitable[dict[str, tuple[str, str]]]]


def fix_age_s(position: dict[str, Any] | None, now: float) -> float | None:
    if not position or not isinstance(position.get("ts"), str):
        return None
    try:
        ts = parse_iso(position["ts"])
    except ValueError:
        return None
    return round(max(0.0, now - ts), 1)


def unit_view(rec: UnitRecord, p: Presence | None, action: tuple[str, str] | None = None,
              now: float | None = None, stale_after_s: float = 30.0) -> dict[str, Any]:
    p = p or Presence(rec.id)
    age = fix_age_s(p.position, time.time() if now is None else now)
    return {
        "fix_age_s": age,
        "stale": age is not None and age > stale_after_s,
        "action_id": action[0] if action else None,
        "case_number": action[1] if action else None,
        "id": rec.id,
        "kind": rec.kind,
        "name": rec.name,
        "disabled": rec.disabled,
        "online": p.online,
        "publishing": p.publishing,
        # has an instruction link (Socket.IO /unit): can receive instructions and hear talk-back
        "reachable": p.connected,
        "last_seen": iso_seconds(p.last_seen),
        "video_codec": p.video_codec,
        "audio_codec": p.audio_codec,
        "position": p.position,
        "node": p.node or None,
    }


class Roster:
    """Units as operators see them. ``watchers`` are told every :meth:`mark` (before and after),
    in order; ``running`` answers the running action of each unit."""

    def __init__(self, accounts: Accounts, presence: PresenceStore, running: UnitActions, emit: Emit,
                 watchers: Sequence[Watcher] = (), stale_after_s: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._accounts = accounts
        self.presence = presence
        self._running = running
        self._emit = emit
        self._watchers = tuple(watchers)
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._records: dict[str, UnitRecord] = {}  # id and kind never change; saves a query per event

    async def _actions(self) -> dict[str, tuple[str, str]]:
        return await self._running()

    async def units(self) -> list[dict[str, Any]]:
        recs = await self._accounts.db.run(self._accounts.list_units)
        pres = await self.presence.all()
        actions = await self._actions()
        now = self._clock()
        return [unit_view(r, pres.get(r.id), actions.get(r.id), now, self.stale_after_s) for r in recs]

    async def unit(self, unit_id: str) -> dict[str, Any] | None:
        rec = await self._accounts.db.run(self._accounts.get_unit, unit_id)
        if rec is None:
            return None
        return unit_view(rec, await self.presence.get(unit_id), (await self._actions()).get(unit_id),
                         self._clock(), self.stale_after_s)

    async def announce(self, unit_id: str) -> None:
        """Push the unit's current view to operators (e.g. after its action started)."""
        view = await self.unit(unit_id)
        if view is not None:
            await self._emit(view)

    async def action_changed(self, action: Action) -> None:
        """An action listener: the team's units now show (or no longer show) the action."""
        for unit_id in action.units:
            await self.announce(unit_id)

    async def online_units(self) -> list[str]:
        return [u for u, p in (await self.presence.all()).items() if p.online]

    async def reachable_units(self, among: Iterable[str] | None = None) -> list[str]:
        """Units with an instruction link now (they hear of a new instruction at once); with
        ``among``, only those of these units (their presence alone is read)."""
        found = await (self.presence.all() if among is None else self.presence.some(among))
        return [u for u, p in found.items() if p.connected]

    def forget(self, unit_id: str) -> None:
        """The unit's record changed (registered, renamed, disabled): read it again next time."""
        self._records.pop(unit_id, None)

    async def link_opened(self, unit_id: str) -> None:
        """The unit's link opened on this node. If another node was the last to write the unit, its
        media state is not carried over: that node may have died (``kill -9``: nothing marked the
        publish ended) and this node would show its publish as its own for ever. A publish the unit
        makes here sets it again."""
        changes: dict[str, Any] = {"connected": True}
        before = await self.presence.get(unit_id)
        if before is not None and before.node != self.presence.node and (before.publishing or before.lost_publish_node):
            # ``lost_publish_node``: presence already reads that node as dead; the publish there is lost
            # all the same (and the raw entry, which this update starts from, still says publishing).
            lost = before.lost_publish_node or before.node
            changes.update(publishing=False, video_codec=None, audio_codec=None, lost_publish_node=lost,
                           lost_publish_at=before.lost_publish_at if before.lost_publish_node else before.last_seen)
            logger.info("unit %s: linked here after node %s; its publish there is not carried over",
                        unit_id, before.node)
        await self.mark(unit_id, **changes)

    async def disconnected(self, links: UnitLinks) -> None:
        """At shutdown: the units still linked to this node are no longer connected to it."""
        for unit_id in links.units():
            await self.presence.update(unit_id, connected=False)

    async def forget_node(self, node: str) -> None:
        """At start: units this node knew as connected or publishing before it stopped are not any more."""
        for unit_id, p in (await self.presence.all()).items():
            if p.node == node and p.online:
                await self.presence.update(unit_id, connected=False, publishing=False)

    async def move(self, unit_id: str, position: dict[str, Any], seen: float) -> None:
        """Record a new live position (``seen``: epoch seconds, becomes ``last_seen``) quietly.

        Unlike :meth:`mark` this neither emits nor calls the watchers: positions reach operators
        in batches (``unit_positions``, see :mod:`dispatch_server.positions`), and watchers look
        at ``online`` and ``publishing``, which a position never changes.
        """
        await self.presence.update(unit_id, position=position, last_seen=seen)

    async def mark(self, unit_id: str, *, emit: bool = True, **changes: Any) -> None:
        """Record a change (``last_seen`` is set to now) and tell operators."""
        changes.setdefault("last_seen", self._clock())
        before = await self.presence.get(unit_id) if self._watchers else None
        p = await self.presence.update(unit_id, **changes)
        for watcher in self._watchers:
            try:
                await watcher(before, p)
            except Exception:
                logger.exception("unit %s: state watcher failed", unit_id)
        if not emit:
            return
        rec = self._records.get(unit_id)
        if rec is None:
            rec = await self._accounts.db.run(self._accounts.get_unit, unit_id)
            if rec is not None:
                self._records[unit_id] = rec
        if rec is not None:
            try:
                await self._emit(unit_view(rec, p, (await self._actions()).get(unit_id), self._clock(),
                                           self.stale_after_s))
            except Exception as exc:  # a Redis hiccup must not break the unit's own request
                logger.warning("unit %s: could not broadcast status: %s", unit_id, exc)

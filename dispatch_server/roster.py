"""The roster operators see: registered units joined with their presence, pushed live.

Every change of a unit's state goes through :meth:`Roster.mark`, which stores it and emits one
``unit_status`` event to the operators' room (through Redis to every node in Redis mode), except
a new position of a unit already shown where it is: :meth:`Roster.move` stores it quietly, and
the position service pushes such moves in batches.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any, Awaitable, Callable, Generic, TypeVar

from utctime import iso_seconds

from .presence import Presence, PresenceStore
from .store import Store, UnitRecord

logger = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], Awaitable[None]]
Watcher = Callable[[Presence | None, Presence], Awaitable[None]]
UnitActions = Callable[[], Awaitable[dict[str, tuple[str, str]]]]


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC to the second (``last_seen``, stamped on every fix)."""
    return None if ts is None else iso_seconds(ts)


def fix_age_s(position: dict[str, Any] | None, now: float) -> float | None:
    if not position or not isinstance(position.get("ts"), str):
        return None
    try:
        ts = dt.datetime.fromisoformat(position["ts"].replace("Z", "+00:00")).timestamp()
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
        "online": p.online,
        "publishing": p.publishing,
        "last_seen": iso(p.last_seen),
        "video_codec": p.video_codec,
        "audio_codec": p.audio_codec,
        "position": p.position,
        "node": p.node or None,
    }


T = TypeVar("T")


class SharedCall(Generic[T]):
    """``await shared()`` calls ``fn()``, unless a call is in flight: then it waits for that one.

    For lookups that usually answer from a cache without suspending (then this costs one future)
    but sometimes go to the store: without it, every event arriving during that query (hundreds a
    second with thousands of units) would start a query of its own and queue behind the others.
    """

    def __init__(self, fn: Callable[[], Awaitable[T]]) -> None:
        self._fn = fn
        self._inflight: asyncio.Future[T] | None = None

    async def __call__(self) -> T:
        while (inflight := self._inflight) is not None:
            try:
                return await asyncio.shield(inflight)
            except asyncio.CancelledError:
                if not inflight.cancelled():
                    raise  # this caller was cancelled
                # the caller that made the call was cancelled: make another
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._inflight = fut
        try:
            value = await self._fn()
        except Exception as exc:
            fut.set_exception(exc)
            fut.exception()  # marked retrieved: the waiters, if any, raise it too
            raise
        except BaseException:
            fut.cancel()
            raise
        finally:
            self._inflight = None
        fut.set_result(value)
        return value


class Roster:
    def __init__(self, store: Store, presence: PresenceStore, emit: Emit,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.presence = presence
        self._emit = emit
        self._clock = clock
        self.watchers: list[Watcher] = []
        self.unit_actions: UnitActions | None = None  # running action (id, case number) per unit
        self.stale_after_s = 30.0
        self._records: dict[str, UnitRecord] = {}  # id and kind never change; saves a query per event

    async def _actions(self) -> dict[str, tuple[str, str]]:
        if self.unit_actions is None:
            return {}
        return await self.unit_actions()

    async def units(self) -> list[dict[str, Any]]:
        recs = await self._store.run(self._store.list_units)
        pres = await self.presence.all()
        actions = await self._actions()
        now = self._clock()
        return [unit_view(r, pres.get(r.id), actions.get(r.id), now, self.stale_after_s) for r in recs]

    async def unit(self, unit_id: str) -> dict[str, Any] | None:
        rec = await self._store.run(self._store.get_unit, unit_id)
        if rec is None:
            return None
        return unit_view(rec, await self.presence.get(unit_id), (await self._actions()).get(unit_id),
                         self._clock(), self.stale_after_s)

    async def announce(self, unit_id: str) -> None:
        """Push the unit's current view to operators (e.g. after its action started)."""
        view = await self.unit(unit_id)
        if view is not None:
            await self._emit(view)

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
        before = await self.presence.get(unit_id) if self.watchers else None
        p = await self.presence.update(unit_id, **changes)
        for watcher in self.watchers:
            try:
                await watcher(before, p)
            except Exception:
                logger.exception("unit %s: state watcher failed", unit_id)
        if not emit:
            return
        rec = self._records.get(unit_id)
        if rec is None:
            rec = await self._store.run(self._store.get_unit, unit_id)
            if rec is not None:
                self._records[unit_id] = rec
        if rec is not None:
            try:
                await self._emit(unit_view(rec, p, (await self._actions()).get(unit_id), self._clock(),
                                           self.stale_after_s))
            except Exception as exc:  # a Redis hiccup must not break the unit's own request
                logger.warning("unit %s: could not broadcast status: %s", unit_id, exc)

"""The roster operators see: registered units joined with their presence, pushed live.

Every change of a unit's state goes through :meth:`Roster.mark`, which stores it and emits one
``unit_status`` event to the operators' room (through Redis to every node in Redis mode).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any, Awaitable, Callable

from .presence import Presence, PresenceStore
from .store import Store, UnitRecord

logger = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], Awaitable[None]]


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def unit_view(rec: UnitRecord, p: Presence | None) -> dict[str, Any]:
    p = p or Presence(rec.id)
    return {
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


class Roster:
    def __init__(self, store: Store, presence: PresenceStore, emit: Emit,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.presence = presence
        self._emit = emit
        self._clock = clock

    async def units(self) -> list[dict[str, Any]]:
        recs = await self._store.run(self._store.list_units)
        pres = await self.presence.all()
        return [unit_view(r, pres.get(r.id)) for r in recs]

    async def unit(self, unit_id: str) -> dict[str, Any] | None:
        rec = await self._store.run(self._store.get_unit, unit_id)
        if rec is None:
            return None
        return unit_view(rec, await self.presence.get(unit_id))

    async def mark(self, unit_id: str, *, emit: bool = True, **changes: Any) -> None:
        """Record a change (``last_seen`` is set to now) and tell operators."""
        changes.setdefault("last_seen", self._clock())
        p = await self.presence.update(unit_id, **changes)
        if not emit:
            return
        rec = await self._store.run(self._store.get_unit, unit_id)
        if rec is not None:
            try:
                await self._emit(unit_view(rec, p))
            except Exception as exc:  # a Redis hiccup must not break the unit's own request
                logger.warning("unit %s: could not broadcast status: %s", unit_id, exc)

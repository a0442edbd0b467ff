"""SOS (一键求助): a unit in danger; every operator is alarmed with its position and its feed."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from geo.fix import FixError, parse_fix

from .actions import ActionStore
from .alerts import AlertService
from .errors import BadRequest
from .roster import fix_age_s
from .stores.presence import PresenceStore

MAX_NOTE = 500


@dataclass(frozen=True)
class SosCall:
    """What a unit sends with its SOS (parsed at the edge): a note, and a fix if it has one."""

    note: str = ""
    lat: float | None = None
    lon: float | None = None
    accuracy: float | None = None


class SosService:
    def __init__(self, alerts: AlertService, actions: ActionStore, presence: PresenceStore,
                 clock: Callable[[], float] = time.time) -> None:
        self._alerts = alerts
        self._actions = actions
        self._presence = presence
        self._clock = clock

    async def raise_sos(self, unit_id: str, call: SosCall) -> dict[str, Any]:
        """Raise an SOS alert. The position is the one sent with it; else the unit's last known
        fix, marked with its age (``position_age_s``); with no fix at all the alert says the
        position is unknown rather than inventing one."""
        position: dict[str, Any] | None = None
        age: float | None = None
        now = self._clock()
        if call.lat is not None or call.lon is not None:
            raw = {"ts": now, "lat": call.lat, "lon": call.lon}
            if call.accuracy is not None:
                raw["accuracy"] = call.accuracy
            try:
                position = parse_fix(raw, now).as_dict()
            except FixError as exc:
                raise BadRequest(f"sos: {exc}", code="bad_message") from None
        else:
            presence = await self._presence.get(unit_id)
            position = presence.position if presence else None
            age = fix_age_s(position, now)
        action = await self._actions.running_for_unit(unit_id)
        where = "" if age is None and position is not None else (
            " (position unknown)" if position is None else f" (last known position, {age:.0f} s old)")
        message = f"SOS from unit {unit_id}{where}" + (f": {call.note}" if call.note else "")
        return await self._alerts.raise_alert(
            "sos", unit_id, message, actor=f"unit:{unit_id}", position=position, position_age_s=age,
            action_id=action.id if action else None, case_number=action.case_number if action else None,
            params={"note": call.note or "", "position_known": position is not None,
                    "position_age_s": None if age is None else round(age)},
        )

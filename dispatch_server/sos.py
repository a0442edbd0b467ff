"""SOS (一键求助): a unit in danger; every operator is alarmed with its position and its feed."""

from __future__ import annotations

import time
from typing import Any

from geo.fix import FixError, parse_fix

from .actions import ActionService
from .alerts import AlertService
from .errors import BadRequest
from .roster import Roster

MAX_NOTE = 500


async def raise_sos(alerts: AlertService, actions: ActionService, roster: Roster, unit_id: str,
                    data: Any) -> dict[str, Any]:
    """Raise an SOS alert; the position is the one sent with it, else the unit's last known fix."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadRequest("sos: expected a JSON object", code="bad_message")
    note = data.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise BadRequest(f"sos: note must be text of at most {MAX_NOTE} characters", code="bad_message")
    position: dict[str, Any] | None = None
    if data.get("lat") is not None or data.get("lon") is not None:
        try:
            position = parse_fix({"ts": time.time(), **{k: data[k] for k in ("lat", "lon", "accuracy") if k in data}},
                                 time.time()).as_dict()
        except FixError as exc:
            raise BadRequest(f"sos: {exc}", code="bad_message") from None
    else:
        presence = await roster.presence.get(unit_id)
        position = presence.position if presence else None
    action = await actions.running_for_unit(unit_id)
    message = f"SOS from unit {unit_id}" + (f": {note}" if note else "")
    return await alerts.raise_alert(
        "sos", unit_id, message, actor=f"unit:{unit_id}", position=position,
        action_id=action.id if action else None, case_number=action.case_number if action else None,
    )

"""Request body of ``POST /api/instructions``, parsed into :class:`NewInstruction`.

Errors are ``400`` naming the field: ``bad_target``, ``bad_instruction``, ``too_long``, ``bad_ttl``.
Whether the target exists and whether the lifetime is still ahead are the service's to decide.
"""

from __future__ import annotations

import math
from typing import Any

from geo.fix import FixError, parse_time

from ..auth import check_unit_id
from ..errors import BadRequest
from ..instructions import MAX_TEXT, PRIORITIES, TYPES, NewInstruction

DEFAULT_TTL_S = 3600
DEFAULT_ACK_DEADLINE_S = 300


def _bad(message: str, code: str = "bad_instruction") -> BadRequest:
    return BadRequest(message, code=code)


def _number(d: dict[str, Any], key: str, lo: float, hi: float) -> float:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _bad(f"{key} must be a number")
    if not lo <= v <= hi:
        raise _bad(f"{key}={v} is outside {lo:g}..{hi:g}")
    return float(v)


def parse_new_instruction(data: Any) -> NewInstruction:
    """``POST /api/instructions``: the target, type, payload, priority, lifetime and ack deadline."""
    if not isinstance(data, dict):
        raise _bad("expected a JSON object")
    targets = [k for k in ("unit", "action", "all") if data.get(k) not in (None, False)]
    if len(targets) != 1:
        raise _bad("give exactly one target: 'unit', 'action' or 'all': true", "bad_target")
    unit = data.get("unit")
    if unit is not None:
        check_unit_id(unit)
    action = data.get("action")
    if action is not None and (not isinstance(action, str) or len(action) > 64):
        raise _bad("action must be an action id", "bad_target")
    if "all" in data and data["all"] not in (True, False, None):
        raise _bad("all must be true", "bad_target")
    kind = data.get("type")
    if kind not in TYPES:
        raise _bad(f"type must be one of {', '.join(TYPES)}")
    payload: dict[str, Any] = {}
    text = data.get("text")
    if text is not None:
        if not isinstance(text, str):
            raise _bad("text must be a string")
        if len(text) > MAX_TEXT:
            raise _bad(f"text is {len(text)} characters; the limit is {MAX_TEXT}", "too_long")
        payload["text"] = text
    if kind == "text" and not (text or "").strip():
        raise _bad("a text instruction needs a non-empty 'text'")
    if kind == "goto":
        payload["lat"] = _number(data, "lat", -90, 90)
        payload["lon"] = _number(data, "lon", -180, 180)
        note = data.get("note", "")
        if not isinstance(note, str) or len(note) > MAX_TEXT:
            raise _bad(f"note must be text of at most {MAX_TEXT} characters")
        payload["note"] = note
    priority = data.get("priority", "normal")
    if priority not in PRIORITIES:
        raise _bad(f"priority must be one of {', '.join(PRIORITIES)}")
    expires_at: float | None = None
    ttl = float(DEFAULT_TTL_S)
    if "expires_at" in data:
        try:
            expires_at = parse_time(data["expires_at"])
        except FixError as exc:
            raise _bad(f"expires_at: {exc}", "bad_ttl") from None
    else:
        raw = data.get("ttl_s", DEFAULT_TTL_S)
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            raise _bad("ttl_s must be a number of seconds", "bad_ttl")
        if raw <= 0:
            raise _bad(f"ttl_s={raw}: the instruction would expire before it is sent (TTL in the past)", "bad_ttl")
        ttl = float(raw)
    ack_deadline = data.get("ack_deadline_s", DEFAULT_ACK_DEADLINE_S)
    if isinstance(ack_deadline, bool) or not isinstance(ack_deadline, (int, float)) or not 1 <= ack_deadline <= 86400:
        raise _bad("ack_deadline_s must be 1..86400 seconds")
    return NewInstruction(unit, action, bool(data.get("all")), kind, payload, priority, ttl, float(ack_deadline),
                          expires_at)



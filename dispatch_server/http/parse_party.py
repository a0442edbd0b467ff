"""Request bodies of party access, parsed into typed values: sign-in, access codes, footage
requests, replies, decisions and blur regions. Errors are ``400`` naming the field."""

from __future__ import annotations

import math
from typing import Any

from geo.fix import FixError, parse_time

from ..casenumber import CaseNumberError, parse_case_number
from ..errors import BadRequest
from ..footage_requests import DECISIONS, BlurRegion, Decision, NewFootageRequest, check_range
from ..party_access import PartySignIn, normalize_name

MAX_REASON = 2000
MAX_REGIONS = 200


def case_of(value: Any) -> str:
    try:
        return str(parse_case_number(value if isinstance(value, str) else ""))
    except CaseNumberError as exc:
        raise BadRequest(f"case number: {exc}", code="bad_case_number") from None


def name_of(value: Any) -> str:
    if not isinstance(value, str):
        raise BadRequest("name must be a string", code="bad_name")
    text = normalize_name(value)
    if not 1 <= len(text) <= 100:
        raise BadRequest("name must be 1-100 characters", code="bad_name")
    return text


def parse_sign_in(body: dict[str, Any]) -> PartySignIn:
    case, name, code = case_of(body.get("case_number")), name_of(body.get("name")), body.get("code")
    if not isinstance(code, str) or not 4 <= len(code) <= 64:
        raise BadRequest("access code must be the code the court gave you", code="bad_code_format")
    return PartySignIn(case, code, name)


def _time(value: Any, name: str) -> float | None:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return parse_time(value)
    except (FixError, TypeError) as exc:
        raise BadRequest(f"{name}: {exc}", code="bad_time") from None


def _reason(value: Any, required_message: str | None) -> str:
    if not isinstance(value, str) or len(value) > MAX_REASON:
        raise BadRequest(required_message or "reason must be text", code="bad_reason")
    if required_message and not value.strip():
        raise BadRequest(required_message, code="bad_reason")
    return value.strip()


def parse_footage_request(body: dict[str, Any]) -> NewFootageRequest:
    action_id = body.get("action_id")
    reason = _reason(body.get("reason"), f"reason: say why you need the footage (1-{MAX_REASON} characters)")
    start, end = _time(body.get("from"), "from"), _time(body.get("to"), "to")
    check_range(start, end)
    return NewFootageRequest(action_id if isinstance(action_id, str) else str(action_id), reason, start, end)


def parse_reply(body: Any) -> str:
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message.strip() or len(message) > MAX_REASON:
        raise BadRequest(f"message: 1-{MAX_REASON} characters", code="bad_message")
    return message.strip()


def parse_decision(body: dict[str, Any]) -> Decision:
    decision = body.get("decision")
    if decision not in DECISIONS:
        raise BadRequest("decision must be approve, refuse or more_info", code="bad_decision")
    reason = _reason(body.get("reason", ""), None)
    recording_id = body.get("recording_id")
    if recording_id is not None and not isinstance(recording_id, str):
        raise BadRequest("recording_id: choose one of the action's recordings", code="bad_recording")
    return Decision(decision=decision, reason=reason, recording_id=recording_id or None,
                    release_until=_time(body.get("release_until"), "release_until"),
                    start=_time(body.get("from"), "from"), end=_time(body.get("to"), "to"),
                    from_given="from" in body, to_given="to" in body,
                    include_audio=bool(body.get("include_audio", True)))


def parse_regions(body: Any) -> list[BlurRegion]:
    regions = body.get("regions") if isinstance(body, dict) else None
    if not isinstance(regions, list) or len(regions) > MAX_REGIONS:
        raise BadRequest(f"regions: a list of at most {MAX_REGIONS} regions", code="bad_regions")
    out = []
    for i, r in enumerate(regions):
        if not isinstance(r, dict):
            raise BadRequest(f"regions[{i}]: expected an object", code="bad_regions")
        try:
            box = [float(r[k]) for k in ("x", "y", "w", "h")]
            start_s, end_s = float(r.get("start_s", 0.0)), float(r.get("end_s", 1e9))
        except (KeyError, TypeError, ValueError):
            raise BadRequest(f"regions[{i}]: x, y, w, h (pixels) and optional start_s, end_s",
                             code="bad_regions") from None
        x, y, w, h = box
        if not all(map(math.isfinite, (*box, start_s, end_s))):
            raise BadRequest(f"regions[{i}]: numbers must be finite", code="bad_regions")
        if min(w, h) <= 0 or min(x, y) < 0 or end_s <= start_s:
            raise BadRequest(f"regions[{i}]: empty or negative box or time span", code="bad_regions")
        action = r.get("action", "blur")
        if action not in ("blur", "keep"):
            raise BadRequest(f"regions[{i}].action: blur or keep", code="bad_regions")
        out.append(BlurRegion(x, y, w, h, start_s, end_s, action, str(r.get("reason", "manual"))[:200]))
    return out

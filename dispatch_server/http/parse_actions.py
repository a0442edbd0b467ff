"""Request bodies of the actions API, parsed into :class:`ActionFields` (``POST``/``PATCH /api/actions``).

Every error is ``400`` with a code (``bad_action``, ``bad_area``, ``bad_case_number``) and a
message that names the field.
"""

from __future__ import annotations

import math
from typing import Any

from geo.fix import FixError, parse_time

from ..actions import ACTION_TYPES, FIELDS, ActionFields
from ..auth import check_unit_id
from ..casenumber import CaseNumberError, parse_case_number
from ..errors import BadRequest

MAX_TEXT = 500
MAX_POLYGON_POINTS = 500


def _bad(message: str, code: str = "bad_action") -> BadRequest:
    return BadRequest(message, code=code)


def _text(d: dict[str, Any], key: str, required: bool, max_len: int = MAX_TEXT) -> str:
    v = d.get(key, "")
    if not isinstance(v, str):
        raise _bad(f"{key} must be text")
    v = v.strip()
    if required and not v:
        raise _bad(f"{key} is required")
    if len(v) > max_len:
        raise _bad(f"{key} is longer than {max_len} characters")
    return v


def _coord(v: Any, lo: float, hi: float, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise _bad(f"area: {what} must be a number in {lo}..{hi}", "bad_area")
    return float(v)


def parse_area(v: Any) -> dict[str, Any] | None:
    """``{"type": "circle", lat, lon, radius_m}`` or ``{"type": "polygon", "points": [[lat, lon], ...]}``."""
    if v is None:
        return None
    if not isinstance(v, dict):
        raise _bad("area must be an object", "bad_area")
    kind = v.get("type")
    if kind == "circle":
        r = v.get("radius_m")
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 1 <= r <= 100_000:
            raise _bad("area: radius_m must be 1..100000 metres", "bad_area")
        return {"type": "circle", "lat": _coord(v.get("lat"), -90, 90, "lat"),
                "lon": _coord(v.get("lon"), -180, 180, "lon"), "radius_m": float(r)}
    if kind == "polygon":
        pts = v.get("points")
        if not isinstance(pts, list) or not 3 <= len(pts) <= MAX_POLYGON_POINTS:
            raise _bad(f"area: a polygon needs 3..{MAX_POLYGON_POINTS} points [lat, lon]", "bad_area")
        out = []
        for p in pts:
            if not isinstance(p, (list, tuple)) or len(p) != 2:
                raise _bad("area: each polygon point is [lat, lon]", "bad_area")
            out.append([_coord(p[0], -90, 90, "lat"), _coord(p[1], -180, 180, "lon")])
        return {"type": "polygon", "points": out}
    raise _bad("area.type must be 'circle' or 'polygon'", "bad_area")


def _names(d: dict[str, Any], key: str, unit_ids: bool = False) -> tuple[str, ...]:
    v = d.get(key, [])
    if not isinstance(v, list) or len(v) > 200 or not all(isinstance(x, str) and 0 < len(x) <= 64 for x in v):
        raise _bad(f"{key} must be a list of at most 200 names")
    if unit_ids:
        for x in v:
            check_unit_id(x)
    return tuple(dict.fromkeys(v))


def parse_action_fields(data: Any, partial: bool) -> ActionFields:
    """Validated action fields from a JSON body; ``partial`` for PATCH (only the keys given)."""
    if not isinstance(data, dict):
        raise _bad("expected a JSON object")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise _bad(f"unknown field {unknown[0]!r} (known: {', '.join(sorted(FIELDS))})")
    out: dict[str, Any] = {}

    def want(key: str) -> bool:
        return not partial or key in data

    if want("case_number"):
        try:
            raw_case = data.get("case_number")
            out["case_number"] = str(parse_case_number(raw_case if isinstance(raw_case, str) else ""))
        except CaseNumberError as exc:
            raise _bad(str(exc), "bad_case_number") from None
    if want("title"):
        out["title"] = _text(data, "title", True)
    if want("type"):
        t = data.get("type", "other")
        if t not in ACTION_TYPES:
            raise _bad(f"type must be one of {', '.join(ACTION_TYPES)}")
        out["type"] = t
    if want("address"):
        out["address"] = _text(data, "address", False)
    if want("area"):
        out["area"] = parse_area(data.get("area"))
    if want("planned_at"):
        raw = data.get("planned_at")
        try:
            out["planned_at"] = None if raw is None else parse_time(raw)
        except FixError as exc:
            raise _bad(f"planned_at: {exc}") from None
    if want("units"):
        out["units"] = _names(data, "units", unit_ids=True)
    if want("officers"):
        out["officers"] = _names(data, "officers")
    if want("judge"):
        out["judge"] = _text(data, "judge", False, 64)
    return ActionFields(**out, given=frozenset(out))

"""Wire messages parsed at the edge: one function per message, so handlers never touch raw dicts.

Every parser raises :class:`BadRequest` (code ``bad_message``) naming the field that is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from geo.fix import Fix, FixError, parse_fix

from .errors import BadRequest, TooLarge


def _bad(message: str) -> BadRequest:
    return BadRequest(message, code="bad_message")


def check_size(data: Any, limit: int, what: str) -> None:
    """Reject payloads whose JSON form exceeds ``limit`` bytes."""
    try:
        size = len(json.dumps(data, default=lambda o: "x" * len(o) if isinstance(o, (bytes, bytearray)) else str(o)))
    except (TypeError, ValueError) as exc:
        raise _bad(f"{what}: payload is not JSON-like: {exc}") from exc
    if size > limit:
        raise TooLarge(f"{what}: {size} bytes is over the limit of {limit} bytes")


def _obj(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _bad(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data


def _str(d: dict[str, Any], key: str, what: str, max_len: int = 256) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v:
        raise _bad(f"{what}: field {key!r} must be a non-empty string")
    if len(v) > max_len:
        raise _bad(f"{what}: field {key!r} is longer than {max_len} characters")
    return v


@dataclass(frozen=True)
class Login:
    username: str
    password: str


def parse_login(data: Any) -> Login:
    d = _obj(data, "login")
    return Login(_str(d, "username", "login", 64), _str(d, "password", "login", 1024))


@dataclass(frozen=True)
class Offer:
    sdp: str


def parse_publish(data: Any, max_sdp: int) -> Offer:
    d = _obj(data, "publish")
    return Offer(_str(d, "sdp", "publish", max_sdp))


@dataclass(frozen=True)
class Watch:
    unit_id: str
    sdp: str


def parse_watch(data: Any, max_sdp: int) -> Watch:
    d = _obj(data, "watch")
    return Watch(_str(d, "unit_id", "watch", 64), _str(d, "sdp", "watch", max_sdp))


@dataclass(frozen=True)
class SessionRef:
    session_id: str


def parse_session_ref(data: Any, what: str) -> SessionRef:
    d = _obj(data, what)
    return SessionRef(_str(d, "session_id", what, 64))


def parse_position(data: Any, now: float) -> Fix:
    try:
        return parse_fix(data, now)
    except FixError as exc:
        raise _bad(f"position: {exc}") from exc

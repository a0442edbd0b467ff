"""Request bodies of the administration API (``/api/units``, ``/api/users``), parsed into small
records. Errors are ``400`` naming the field; whether a value is allowed (a role, a kind, a
password's length) is the service's to decide."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest


@dataclass(frozen=True)
class NewUnit:
    id: str
    kind: str
    name: str


@dataclass(frozen=True)
class NewUser:
    username: str
    role: str
    password: str


def _text(body: dict[str, Any], key: str, what: str, *, required: bool = True) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise BadRequest(f"{what}: field {key!r} must be a non-empty string", code="bad_request")
    return value


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(f"{what}: expected a JSON object", code="bad_request")
    return body


def parse_new_unit(body: Any) -> NewUnit:
    """``POST /api/units``: ``{id, kind: body|vehicle|phone, name?}``."""
    d = _object(body, "new unit")
    return NewUnit(_text(d, "id", "new unit"), _text(d, "kind", "new unit"), _text(d, "name", "new unit",
                                                                                  required=False))


def parse_new_user(body: Any) -> NewUser:
    """``POST /api/users``: ``{username, role, password}``."""
    d = _object(body, "new user")
    return NewUser(_text(d, "username", "new user"), _text(d, "role", "new user"), _text(d, "password", "new user"))


def parse_password(body: Any) -> str:
    """``POST /api/users/{name}/password``: ``{password}``."""
    return _text(_object(body, "password"), "password", "password")


def parse_role(body: Any) -> str:
    """``POST /api/users/{name}/role``: ``{role}``."""
    return _text(_object(body, "role"), "role", "role")

"""Socket.IO rooms: a unit's room on ``/unit``, and on ``/console`` one room per permission, so
each push reaches exactly the people whose role may read it."""

from __future__ import annotations

from ..auth import PERMISSIONS


def unit_room(unit_id: str) -> str:
    return f"unit:{unit_id}"


def permission_room(permission: str) -> str:
    return f"perm:{permission}"


def rooms_of(role: str) -> list[str]:
    """The permission rooms a console of ``role`` joins."""
    return [permission_room(p) for p, roles in PERMISSIONS.items() if role in roles]

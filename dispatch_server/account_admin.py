"""Administration of who may connect, from the console or the API: units (register, issue or
rotate a token, disable, enable) and people (create, reset a password, change a role, disable,
enable). Every change is written to the audit trail with the administrator as its actor.

Changes to a connected unit or a logged-in person take effect at once: :class:`Revocation`
closes the links and sessions whose credentials no longer hold (``check_now``), and the roster
pushes the unit's new state to the consoles.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from utctime import iso_seconds

from .audit import AuditTrail
from .auth import ROLES, UNIT_KINDS, USERNAME_RE, Authenticator, Person, check_unit_id, hash_token, new_token
from .errors import BadRequest, Conflict, NotFound
from .revocation import Revocation
from .stores.accounts import Accounts, UnitRecord, UserRecord

logger = logging.getLogger(__name__)

MAX_NAME = 64
MAX_PASSWORD = 1024

Announce = Callable[[str], Awaitable[None]]  # push a unit's view to the consoles
Forget = Callable[[str], None]  # drop a cached unit record


def unit_admin_view(rec: UnitRecord) -> dict[str, Any]:
    return {"id": rec.id, "kind": rec.kind, "name": rec.name, "disabled": rec.disabled,
            "created_at": iso_seconds(rec.created_at)}


def user_view(rec: UserRecord, sessions: int = 0) -> dict[str, Any]:
    return {"username": rec.username, "role": rec.role, "disabled": rec.disabled,
            "created_at": iso_seconds(rec.created_at), "sessions": sessions}


class AccountAdmin:
    """Units (``units.admin``) and people (``accounts.admin``), changed by a supervisor or an administrator."""

    def __init__(self, accounts: Accounts, auth: Authenticator, audit: AuditTrail, revocation: Revocation,
                 announce: Announce, forget: Forget, min_password_length: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._accounts = accounts
        self._db = accounts.db
        self._auth = auth
        self._audit = audit
        self._revocation = revocation
        self._announce = announce
        self._forget = forget
        self._min_password = min_password_length
        self._clock = clock

    # units ---------------------------------------------------------------------------------
    async def units(self) -> list[dict[str, Any]]:
        return [unit_admin_view(r) for r in await self._db.run(self._accounts.list_units)]

    async def _unit(self, unit_id: str) -> UnitRecord:
        rec = await self._db.run(self._accounts.get_unit, check_unit_id(unit_id))
        if rec is None:
            raise NotFound(f"unknown unit {unit_id!r}", code="unknown_unit")
        return rec

    async def register_unit(self, person: Person, unit_id: str, kind: str, name: str) -> tuple[dict[str, Any], str]:
        """A new unit and its token (shown once: only its hash is stored)."""
        check_unit_id(unit_id)
        if kind not in UNIT_KINDS:
            raise BadRequest(f"kind must be one of {', '.join(UNIT_KINDS)}", code="bad_kind")
        name = _name(name)
        token = new_token()
        try:
            await self._db.run(self._accounts.add_unit, unit_id, kind, hash_token(token), self._clock(), name)
        except KeyError:
            raise Conflict(f"unit {unit_id!r} already exists (rotate its token instead)",
                           code="unit_exists") from None
        await self._audit.append(person.username, "unit.registered", f"unit:{unit_id}", kind=kind, name=name)
        logger.info("%s registered unit %s (%s)", person.username, unit_id, kind)
        self._forget(unit_id)
        await self._announce(unit_id)
        return unit_admin_view(await self._unit(unit_id)), token

    async def rotate_unit(self, person: Person, unit_id: str) -> tuple[dict[str, Any], str]:
        """A new token for the unit; the old one stops working and its open links close."""
        await self._unit(unit_id)
        token = new_token()
        await self._db.run(self._accounts.set_unit_token, unit_id, hash_token(token))
        await self._audit.append(person.username, "unit.token_rotated", f"unit:{unit_id}")
        logger.info("%s rotated the token of unit %s", person.username, unit_id)
        self._revocation.check_now()
        return unit_admin_view(await self._unit(unit_id)), token

    async def set_unit_disabled(self, person: Person, unit_id: str, disabled: bool) -> dict[str, Any]:
        """Disable (its links close at once; it is refused until enabled) or enable a unit."""
        rec = await self._unit(unit_id)
        if rec.disabled != disabled:
            await self._db.run(self._accounts.set_unit_disabled, unit_id, disabled)
            await self._audit.append(person.username, "unit.disabled" if disabled else "unit.enabled",
                                     f"unit:{unit_id}")
            logger.info("%s %s unit %s", person.username, "disabled" if disabled else "enabled", unit_id)
            self._revocation.check_now()
            self._forget(unit_id)
            await self._announce(unit_id)
        return unit_admin_view(await self._unit(unit_id))

    # people --------------------------------------------------------------------------------
    async def users(self) -> list[dict[str, Any]]:
        records = await self._db.run(self._accounts.list_users)
        sessions = await self._db.run(self._accounts.count_sessions, self._clock())
        return [user_view(r, sessions.get(r.username, 0)) for r in records]

    async def _user(self, username: str) -> UserRecord:
        rec = await self._db.run(self._accounts.get_user, username)
        if rec is None:
            raise NotFound(f"unknown user {username!r}", code="unknown_user")
        return rec

    async def _view(self, username: str) -> dict[str, Any]:
        sessions = await self._db.run(self._accounts.count_sessions, self._clock())
        return user_view(await self._user(username), sessions.get(username, 0))

    async def create_user(self, person: Person, username: str, role: str, password: str) -> dict[str, Any]:
        if not isinstance(username, str) or not USERNAME_RE.match(username):
            raise BadRequest(f"user name {username!r} is not valid: 1-64 letters, digits, '.', '_', '@' or '-'",
                             code="bad_username")
        _role(role)
        hashed = await asyncio.to_thread(self._auth.hash_password, self._password(password))
        try:
            await self._db.run(self._accounts.add_user, username, role, hashed, self._clock())
        except KeyError:
            raise Conflict(f"user {username!r} already exists", code="user_exists") from None
        await self._audit.append(person.username, "user.created", f"user:{username}", role=role)
        logger.info("%s created user %s (%s)", person.username, username, role)
        return await self._view(username)

    async def set_password(self, person: Person, username: str, password: str) -> dict[str, Any]:
        """A new password; every session of the person ends."""
        await self._user(username)
        hashed = await asyncio.to_thread(self._auth.hash_password, self._password(password))
        await self._db.run(self._accounts.set_user_password, username, hashed)
        await self._audit.append(person.username, "user.password_reset", f"user:{username}")
        logger.info("%s reset the password of %s", person.username, username)
        self._revocation.check_now()
        return await self._view(username)

    async def set_role(self, person: Person, username: str, role: str) -> dict[str, Any]:
        """Takes effect on the person's next request; open consoles and viewers reconnect."""
        _role(role)
        rec = await self._user(username)
        if username == person.username and role != "admin":
            raise Conflict("you cannot take the administrator role from yourself", code="own_account")
        if rec.role != role:
            await self._db.run(self._accounts.set_user_role, username, role)
            await self._audit.append(person.username, "user.role_changed", f"user:{username}",
                                     **{"from": rec.role, "to": role})
            logger.info("%s changed the role of %s from %s to %s", person.username, username, rec.role, role)
            self._revocation.check_now()
        return await self._view(username)

    async def set_user_disabled(self, person: Person, username: str, disabled: bool) -> dict[str, Any]:
        """Disable (sessions end, logins refused) or enable a person."""
        rec = await self._user(username)
        if username == person.username and disabled:
            raise Conflict("you cannot disable your own account", code="own_account")
        if rec.disabled != disabled:
            await self._db.run(self._accounts.set_user_disabled, username, disabled)
            await self._audit.append(person.username, "user.disabled" if disabled else "user.enabled",
                                     f"user:{username}")
            logger.info("%s %s user %s", person.username, "disabled" if disabled else "enabled", username)
            self._revocation.check_now()
        return await self._view(username)

    def _password(self, password: Any) -> str:
        if not isinstance(password, str) or len(password) < self._min_password or len(password) > MAX_PASSWORD:
            raise BadRequest(f"the password must have {self._min_password}-{MAX_PASSWORD} characters",
                             code="bad_password")
        return password


def _role(role: Any) -> str:
    if role not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}", code="bad_role")
    return str(role)


def _name(name: Any) -> str:
    if name is None:
        return ""
    if not isinstance(name, str) or len(name.strip()) > MAX_NAME:
        raise BadRequest(f"name: text of at most {MAX_NAME} characters", code="bad_name")
    return name.strip()

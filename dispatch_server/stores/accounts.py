"""Who may connect: field units (device tokens), people (password hashes) and their sessions.

Only hashes are stored: SHA-256 of unit and session tokens, argon2id of passwords (see
:mod:`dispatch_server.auth`). Methods are blocking; the server calls them through
:meth:`Database.run`, the CLI directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .database import Database, IntegrityError


@dataclass(frozen=True)
class UnitRecord:
    id: str
    kind: str
    token_hash: str
    created_at: float
    disabled: bool
    name: str = ""  # what people call it (车载3号), shown beside the id


@dataclass(frozen=True)
class UserRecord:
    username: str
    role: str
    password_hash: str
    created_at: float
    disabled: bool


@dataclass(frozen=True)
class SessionRecord:
    token_hash: str
    username: str
    role: str
    created_at: float
    expires_at: float


UNIT_COLUMNS = "id, kind, token_hash, created_at, disabled, COALESCE(name, '')"
USER_COLUMNS = "username, role, password_hash, created_at, disabled"


def _unit(row: tuple[Any, ...]) -> UnitRecord:
    return UnitRecord(row[0], row[1], row[2], row[3], bool(row[4]), row[5])


def _user(row: tuple[Any, ...]) -> UserRecord:
    return UserRecord(row[0], row[1], row[2], row[3], bool(row[4]))


class Accounts:
    """The ``units``, ``users`` and ``sessions`` tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # units ---------------------------------------------------------------------------------
    def add_unit(self, unit_id: str, kind: str, token_hash: str, now: float, name: str = "") -> None:
        """Create a unit; raises ``KeyError`` if it exists."""
        try:
            self.db.execute("INSERT INTO units(id, kind, token_hash, created_at, name) VALUES (?,?,?,?,?)",
                            (unit_id, kind, token_hash, now, name))
        except IntegrityError:
            raise KeyError(unit_id) from None

    def set_unit_token(self, unit_id: str, token_hash: str) -> bool:
        return self.db.execute("UPDATE units SET token_hash=? WHERE id=?", (token_hash, unit_id)) == 1

    def set_unit_disabled(self, unit_id: str, disabled: bool) -> bool:
        return self.db.execute("UPDATE units SET disabled=? WHERE id=?", (int(disabled), unit_id)) == 1

    def get_unit(self, unit_id: str) -> UnitRecord | None:
        rows = self.db.query(f"SELECT {UNIT_COLUMNS} FROM units WHERE id=?", (unit_id,))
        return _unit(rows[0]) if rows else None

    def list_units(self) -> list[UnitRecord]:
        rows = self.db.query(f"SELECT {UNIT_COLUMNS} FROM units ORDER BY id")
        return [_unit(r) for r in rows]

    # users ---------------------------------------------------------------------------------
    def add_user(self, username: str, role: str, password_hash: str, now: float) -> None:
        """Create a person; raises ``KeyError`` if the name is taken."""
        try:
            self.db.execute("INSERT INTO users(username, role, password_hash, created_at) VALUES (?,?,?,?)",
                            (username, role, password_hash, now))
        except IntegrityError:
            raise KeyError(username) from None

    def set_user_password(self, username: str, password_hash: str) -> bool:
        """A new password; every session of the person ends with it."""
        changed = self.db.execute("UPDATE users SET password_hash=? WHERE username=?", (password_hash, username)) == 1
        if changed:
            self.end_sessions(username)
        return changed

    def set_user_role(self, username: str, role: str) -> bool:
        """Takes effect on the person's next request (sessions read the role from here)."""
        return self.db.execute("UPDATE users SET role=? WHERE username=?", (role, username)) == 1

    def set_user_disabled(self, username: str, disabled: bool) -> bool:
        changed = self.db.execute("UPDATE users SET disabled=? WHERE username=?", (int(disabled), username)) == 1
        if changed and disabled:
            self.end_sessions(username)
        return changed

    def get_user(self, username: str) -> UserRecord | None:
        rows = self.db.query(f"SELECT {USER_COLUMNS} FROM users WHERE username=?", (username,))
        return _user(rows[0]) if rows else None

    def list_users(self) -> list[UserRecord]:
        return [_user(r) for r in self.db.query(f"SELECT {USER_COLUMNS} FROM users ORDER BY username")]

    def count_sessions(self, now: float) -> dict[str, int]:
        """Open sessions per person."""
        rows = self.db.query("SELECT username, COUNT(*) FROM sessions WHERE expires_at > ? GROUP BY username", (now,))
        return {r[0]: int(r[1]) for r in rows}

    def count_users(self) -> int:
        return int(self.db.query("SELECT COUNT(*) FROM users")[0][0])

    # sessions ------------------------------------------------------------------------------
    def add_session(self, rec: SessionRecord) -> None:
        self.db.execute("INSERT INTO sessions(token_hash, username, role, created_at, expires_at) VALUES (?,?,?,?,?)",
                        (rec.token_hash, rec.username, rec.role, rec.created_at, rec.expires_at))

    def get_session(self, token_hash: str) -> SessionRecord | None:
        """The session with its person's current role; None if either is gone or the person is disabled."""
        rows = self.db.query("SELECT s.token_hash, s.username, u.role, s.created_at, s.expires_at FROM sessions s "
                             "JOIN users u ON u.username = s.username WHERE s.token_hash=? AND u.disabled = 0",
                             (token_hash,))
        return SessionRecord(*rows[0]) if rows else None

    def delete_session(self, token_hash: str) -> None:
        self.db.execute("DELETE FROM sessions WHERE token_hash=?", (token_hash,))

    def end_sessions(self, username: str) -> int:
        """End every session of the person; how many there were."""
        return self.db.execute("DELETE FROM sessions WHERE username=?", (username,))

    def purge_sessions(self, now: float) -> int:
        """Delete sessions that expired before ``now``; how many went."""
        return self.db.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))

"""Access that ends when it should: credentials are checked again while connections stay open.

Tokens and sessions are checked when a connection opens, but a unit's token can be rotated or
the unit disabled, and a person can log out, expire, be disabled, get a new password or another
role — from the console, the API or the CLI (another process on the same database). Everything
long-lived registers here when it opens, with the credential it opened with and how to close it:

- a unit's Socket.IO link, its WHIP or Socket.IO publish, its telemetry channel;
- a person's console socket and their WHEP viewing sessions.

Every ``interval_s`` one query per kind re-reads the credentials of what is open; whatever no
longer holds is closed with a reason (a unit's recording gap then says ``access_revoked``).
With the default interval that takes effect within a second; this node's own logouts and
rotations are applied at once (:meth:`check_now`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from .stores.accounts import Accounts

logger = logging.getLogger(__name__)

Close = Callable[[str], Awaitable[None]]  # (reason) -> closed
CHUNK = 500  # ids per query

REASON_UNIT = "credentials revoked: the unit's token was rotated or the unit disabled"
REASON_PERSON = "session ended: logged out, expired, password reset, role changed or the person disabled"


@dataclass(eq=False)
class Grant:
    """One open connection and the credential it was opened with."""

    kind: str  # "unit" | "person"
    subject: str  # unit id, or session token hash
    proof: str  # the unit's token hash, or the person's role when it opened
    close: Close
    what: str  # for the log: "socket.io link", "whip publish", "telemetry", "console", "viewer"
    released: bool = field(default=False)


class Revocation:
    def __init__(self, accounts: Accounts, interval_s: float = 0.5, clock: Callable[[], float] = time.time) -> None:
        self._accounts = accounts
        self._interval_s = interval_s
        self._clock = clock
        self._grants: set[Grant] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.revoked = 0  # connections closed since start

    def unit_opened(self, unit_id: str, token_hash: str, what: str, close: Close) -> Grant:
        grant = Grant("unit", unit_id, token_hash, close, what)
        self._grants.add(grant)
        return grant

    def person_opened(self, token_hash: str, role: str, what: str, close: Close) -> Grant:
        grant = Grant("person", token_hash, role, close, what)
        self._grants.add(grant)
        return grant

    def released(self, grant: Grant | None) -> None:
        """The connection closed by itself; nothing to check any more."""
        if grant is not None:
            grant.released = True
            self._grants.discard(grant)

    def check_now(self) -> None:
        """Check at once (this node just logged someone out or changed a credential)."""
        self._wake.set()

    # checking ----------------------------------------------------------------------------
    def _invalid(self, grants: list[Grant], now: float) -> list[Grant]:
        """Blocking (database thread): the grants whose credential no longer holds."""
        units = sorted({g.subject for g in grants if g.kind == "unit"})
        sessions = sorted({g.subject for g in grants if g.kind == "person"})
        unit_hash: dict[str, str] = {}
        for chunk in _chunks(units):
            marks = ",".join("?" * len(chunk))
            for unit_id, token_hash, disabled in self._accounts.db.query(
                    f"SELECT id, token_hash, disabled FROM units WHERE id IN ({marks})", tuple(chunk)):
                if not disabled:
                    unit_hash[unit_id] = token_hash
        roles: dict[str, str] = {}
        for chunk in _chunks(sessions):
            marks = ",".join("?" * len(chunk))
            for token_hash, role in self._accounts.db.query(
                    f"SELECT s.token_hash, u.role FROM sessions s JOIN users u ON u.username = s.username "
                    f"WHERE s.token_hash IN ({marks}) AND s.expires_at > ? AND u.disabled = 0", (*chunk, now)):
                roles[token_hash] = role
        current = {"unit": unit_hash, "person": roles}
        return [g for g in grants if current[g.kind].get(g.subject) != g.proof]

    async def check(self) -> int:
        """Close whatever no longer holds; how many were closed."""
        grants = [g for g in self._grants if not g.released]
        if not grants:
            return 0
        invalid = await self._accounts.db.run(self._invalid, grants, self._clock())
        for grant in invalid:
            if grant.released:
                continue
            self.released(grant)
            self.revoked += 1
            reason = REASON_UNIT if grant.kind == "unit" else REASON_PERSON
            subject = grant.subject if grant.kind == "unit" else f"session {grant.subject[:8]}…"
            logger.warning("revoked: %s %s of %s: %s", grant.kind, grant.what, subject, reason)
            try:
                await grant.close(reason)
            except Exception:
                logger.exception("closing the revoked %s of %s failed", grant.what, subject)
        return len(invalid)

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.check()
            except Exception:
                logger.exception("revocation check failed; retried in %.1f s", self._interval_s)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="revocation")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def _chunks(items: list[str]) -> list[list[str]]:
    it = iter(items)
    return list(iter(lambda: list(itertools.islice(it, CHUNK)), []))

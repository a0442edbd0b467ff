"""Party access (当事人查询), the door: access codes issued by the court, and the party's sign-in.

Flow: court staff issue an access code for a case and a named party; the party signs in to the
portal with case number + code + name and gets a portal session, in which it sees the actions of
its case and asks for footage (:mod:`dispatch_server.footage_requests`). The code names one party
of one case and works again and again until it expires, so the party can come back to read the
court's decisions and download what was released. Every step is written to the evidence ledger
through ``record`` (who, what, when, where, outcome).

A wrong case number, code or name, or an expired code, gets one and the same answer: someone
trying codes learns nothing about which part was wrong (the ledger records the real reason).

Guessing codes: failures are counted per (client address, case) and per address; after
``max_failures`` the address is locked out for ``lockout_s``, doubling per further failure but
never beyond ``max_lockout_s``. The lockout is keyed by address, so someone guessing from
elsewhere cannot lock the real party out, and it always ends.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from utctime import iso_millis

from .actions import ActionStore
from .config import PartyConfig
from .errors import TooManyAttempts, Unauthorized
from .stores.database import Database

logger = logging.getLogger(__name__)

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"  # no 0/O, 1/I/L, U: read out over the phone
WRONG_SIGN_IN = ("案号、查询码或姓名不正确，或查询码已过期；请核对后重试，或向法院申请新的查询码 / "
                 "the case number, access code or name is not right, or the code has expired: check them, or ask "
                 "the court for a new code")
CODE_GROUPS = 3

Record = Callable[..., Awaitable[Any]]  # archive.record(type, actor=, where=, outcome=, data=)


@dataclass(frozen=True)
class Party:
    """A signed-in party: one named person of one case."""

    case_number: str
    name: str
    token_hash: str
    expires_at: float

    @property
    def actor(self) -> str:
        return f"party:{self.name}@{self.case_number}"


@dataclass(frozen=True)
class PartySignIn:
    """What the party types into the portal (parsed at the edge: case number and name normalised)."""

    case_number: str
    code: str
    name: str


def normalize_name(name: str) -> str:
    """A name as compared: NFKC, whitespace runs folded to one space."""
    return " ".join(unicodedata.normalize("NFKC", name).split())


def new_code() -> str:
    chars = "".join(secrets.choice(CODE_ALPHABET) for _ in range(4 * CODE_GROUPS))
    return "-".join(chars[i:i + 4] for i in range(0, len(chars), 4))


def code_hash(code: str) -> str:
    canonical = "".join(ch for ch in unicodedata.normalize("NFKC", code).upper() if ch.isalnum())
    return hashlib.sha256(canonical.encode()).hexdigest()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PartyAccess:
    def __init__(self, db: Database, config: PartyConfig, actions: ActionStore, record: Record,
                 clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._config = config
        self._actions = actions
        self._record = record
        self._clock = clock

    # court side: codes -----------------------------------------------------------------------
    async def issue_code(self, case: str, name: str, issued_by: str, where: str) -> dict[str, Any]:
        """A new access code for ``name`` of ``case`` (both already validated); shown once."""
        code = new_code()
        now = self._clock()
        expires = now + self._config.code_ttl_s
        await self._db.write(lambda c: c.execute(
            "INSERT INTO party_codes(code_hash, case_number, party_name, issued_by, issued_at, expires_at) "
            "VALUES (?,?,?,?,?,?)", (code_hash(code), case, name, issued_by, now, expires)))
        await self._record("access_code_issued", actor=f"user:{issued_by}", where=where,
                           data={"case_number": case, "party_name": name, "expires_at": iso_millis(expires)})
        return {"code": code, "case_number": case, "party_name": name, "expires_at": expires}

    # party side: sign-in ---------------------------------------------------------------------
    async def login(self, sign_in: PartySignIn, ip: str) -> tuple[str, Party]:
        case, party_name = sign_in.case_number, sign_in.name
        now = self._clock()
        keys = (f"{ip}|{case}", f"{ip}|*")
        locked = await self._db.run(self._locked_until, keys)
        if locked > now:
            await self._record("access_denied", actor=f"party:{party_name}@{case}", where=f"http:{ip}",
                               outcome="denied", data={"case_number": case, "reason": "locked out"})
            raise TooManyAttempts(f"too many wrong codes from this address; try again in {int(locked - now) + 1} s",
                                  locked - now)
        h = code_hash(sign_in.code)

        def check(conn: Any) -> str | None:
            row = conn.execute("SELECT case_number, party_name, expires_at FROM party_codes WHERE code_hash=?",
                               (h,)).fetchone()
            if row is None or row[0] != case:
                return "wrong access code for this case"
            if normalize_name(row[1]) != party_name:
                return "the name does not match the party this code was issued to"
            if row[2] <= now:
                return "this access code has expired"
            conn.execute("UPDATE party_codes SET used_at=COALESCE(used_at, ?) WHERE code_hash=?", (now, h))
            for key in keys:
                conn.execute("DELETE FROM party_failures WHERE key=?", (key,))
            return None

        problem = await self._db.write(check)
        if problem is not None:
            await self._db.write(lambda c: self._fail(c, keys, now))
            await self._record("access_denied", actor=f"party:{party_name}@{case}", where=f"http:{ip}",
                               outcome="denied", data={"case_number": case, "reason": problem})
            raise Unauthorized(WRONG_SIGN_IN, code="bad_access_code")
        token = secrets.token_urlsafe(32)
        party = Party(case, party_name, token_hash(token), now + self._config.session_ttl_s)
        await self._db.write(lambda c: c.execute(
            "INSERT INTO party_sessions(token_hash, case_number, party_name, created_at, expires_at) "
            "VALUES (?,?,?,?,?)",
            (party.token_hash, case, party_name, now, party.expires_at)))
        await self._record("party_login", actor=party.actor, where=f"http:{ip}", data={"case_number": case})
        return token, party

    def _locked_until(self, keys: tuple[str, ...]) -> float:
        marks = ",".join("?" * len(keys))
        rows = self._db.query(f"SELECT MAX(locked_until) FROM party_failures WHERE key IN ({marks})", keys)
        return float(rows[0][0] or 0.0)

    def _fail(self, conn: Any, keys: tuple[str, ...], now: float) -> None:
        c = self._config
        for key, limit in zip(keys, (c.max_failures, 4 * c.max_failures), strict=True):
            row = conn.execute("SELECT failures FROM party_failures WHERE key=?", (key,)).fetchone()
            failures = (row[0] if row else 0) + 1
            locked = 0.0
            if failures >= limit:
                locked = now + min(c.lockout_s * 2 ** (failures - limit), c.max_lockout_s)
            conn.execute("INSERT INTO party_failures(key, failures, locked_until, last_at) VALUES (?,?,?,?) "
                         "ON CONFLICT(key) DO UPDATE SET failures=excluded.failures, "
                         "locked_until=excluded.locked_until, last_at=excluded.last_at", (key, failures, locked, now))

    async def party(self, token: str | None) -> Party:
        """The signed-in party of a portal session token; 401 naming why not."""
        if not token:
            raise Unauthorized("not logged in: use your case number and access code", code="not_logged_in")
        rows = await self._db.run(self._db.query, "SELECT case_number, party_name, expires_at FROM party_sessions "
                                  "WHERE token_hash=?", (token_hash(token),))
        if not rows:
            raise Unauthorized("unknown or ended portal session", code="bad_token")
        case, name, expires = rows[0]
        if expires <= self._clock():
            raise Unauthorized("portal session expired: ask the court for a new access code", code="session_expired")
        return Party(case, name, token_hash(token), expires)

    async def case_actions(self, party: Party) -> list[dict[str, Any]]:
        """The actions of the party's case, as much of each as a party may see."""
        out = []
        for action in await self._actions.list(None):
            if action.case_number == party.case_number:
                v = action.view()
                out.append({k: v.get(k) for k in ("id", "case_number", "title", "type", "state", "started_at",
                                                  "ended_at", "planned_at")})
        return out

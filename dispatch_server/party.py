"""Party access (当事人查询): access codes, footage requests, approval, and download links.

Flow: court staff issue a one-time access code for a case and a named party; the party logs in
to the portal with case number + code + name, sees the actions of the case, and asks for the
footage of an action (or a time range of it) with a reason. A judge or supervisor approves
(choosing the recording, the time range, whether audio is kept and until when the release
holds), refuses with a reason, or asks for more information. An approved request is exported
(``exports.py``: redacted, watermarked, packaged with its proofs); the party then gets a link
that expires, is bound to that request, can be revoked, and is logged on every use.

Every step is written to the evidence ledger through ``record`` (who, what, when, where, outcome).

Guessing codes: failures are counted per (client address, case) and per address; after
``max_failures`` the address is locked out for ``lockout_s``, doubling per further failure but
never beyond ``max_lockout_s``. The lockout is keyed by address, so someone guessing from
elsewhere cannot lock the real party out, and it always ends.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from .actions import ActionService
from .casenumber import CaseNumberError, parse_case_number
from .config import PartyConfig
from .errors import BadRequest, Conflict, DispatchError, Forbidden, NotFound, Unauthorized
from .store import Store

logger = logging.getLogger(__name__)


CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"  # no 0/O, 1/I/L, U: read out over the phone
CODE_GROUPS = 3
STATES = ("pending", "more_info", "approved", "refused", "exporting", "ready", "failed", "revoked")
MAX_REASON = 2000

Record = Callable[..., Awaitable[Any]]  # archive.record(type, actor=, where=, outcome=, data=)
Changed = Callable[[dict[str, Any]], Awaitable[None]]


class TooManyAttempts(DispatchError):
    status, code = 429, "locked_out"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Gone(DispatchError):
    status, code = 410, "gone"


@dataclass(frozen=True)
class Party:
    case_number: str
    name: str
    token_hash: str
    expires_at: float

    @property
    def actor(self) -> str:
        return f"party:{self.name}@{self.case_number}"


def normalize_name(name: Any) -> str:
    if not isinstance(name, str):
        raise BadRequest("name must be a string", code="bad_name")
    text = " ".join(unicodedata.normalize("NFKC", name).split())
    if not 1 <= len(text) <= 100:
        raise BadRequest("name must be 1-100 characters", code="bad_name")
    return text


def case_of(value: Any) -> str:
    try:
        return str(parse_case_number(value if isinstance(value, str) else ""))
    except CaseNumberError as exc:
        raise BadRequest(f"case number: {exc}", code="bad_case_number") from None


def new_code() -> str:
    chars = "".join(secrets.choice(CODE_ALPHABET) for _ in range(4 * CODE_GROUPS))
    return "-".join(chars[i:i + 4] for i in range(0, len(chars), 4))


def code_hash(code: str) -> str:
    canonical = "".join(ch for ch in unicodedata.normalize("NFKC", code).upper() if ch.isalnum())
    return hashlib.sha256(canonical.encode()).hexdigest()


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PartyService:
    def __init__(self, store: Store, config: PartyConfig, actions: ActionService, record: Record,
                 changed: Changed, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._config = config
        self._actions = actions
        self._record = record
        self._changed = changed
        self._clock = clock

    # court side: codes -----------------------------------------------------------------------
    async def issue_code(self, case_number: Any, party_name: Any, issued_by: str, where: str) -> dict[str, Any]:
        case = case_of(case_number)
        name = normalize_name(party_name)
        code = new_code()
        now = self._clock()
        expires = now + self._config.code_ttl_s
        await self._store.write(lambda c: c.execute(
            "INSERT INTO party_codes(code_hash, case_number, party_name, issued_by, issued_at, expires_at) "
            "VALUES (?,?,?,?,?,?)", (code_hash(code), case, name, issued_by, now, expires)))
        await self._record("access_code_issued", actor=f"user:{issued_by}", where=where,
                           data={"case_number": case, "party_name": name, "expires_at": expires})
        return {"code": code, "case_number": case, "party_name": name, "expires_at": expires}

    # party side: login -----------------------------------------------------------------------
    async def login(self, case_number: Any, code: Any, name: Any, ip: str) -> tuple[str, Party]:
        case = case_of(case_number)
        party_name = normalize_name(name)
        if not isinstance(code, str) or not 4 <= len(code) <= 64:
            raise BadRequest("access code must be the code the court gave you", code="bad_code_format")
        now = self._clock()
        keys = (f"{ip}|{case}", f"{ip}|*")
        locked = await self._store.run(self._locked_until, keys)
        if locked > now:
            await self._record("access_denied", actor=f"party:{party_name}@{case}", where=f"http:{ip}",
                               outcome="denied", data={"case_number": case, "reason": "locked out"})
            raise TooManyAttempts(f"too many wrong codes from this address; try again in {int(locked - now) + 1} s",
                                  locked - now)
        h = code_hash(code)

        def consume(conn: Any) -> str | None:
            row = conn.execute("SELECT case_number, party_name, expires_at, used_at FROM party_codes WHERE code_hash=?",
                               (h,)).fetchone()
            if row is None or row[0] != case:
                return "wrong access code for this case"
            if normalize_name(row[1]) != party_name:
                return "the name does not match the party this code was issued to"
            if row[3] is not None:
                return "this access code has already been used; ask the court for a new one"
            if row[2] <= now:
                return "this access code has expired; ask the court for a new one"
            conn.execute("UPDATE party_codes SET used_at=? WHERE code_hash=?", (now, h))
            for key in keys:
                conn.execute("DELETE FROM party_failures WHERE key=?", (key,))
            return None

        problem = await self._store.write(consume)
        if problem is not None:
            await self._store.write(lambda c: self._fail(c, keys, now))
            await self._record("access_denied", actor=f"party:{party_name}@{case}", where=f"http:{ip}",
                               outcome="denied", data={"case_number": case, "reason": problem})
            raise Unauthorized(problem, code="bad_access_code")
        token = secrets.token_urlsafe(32)
        party = Party(case, party_name, _hash(token), now + self._config.session_ttl_s)
        await self._store.write(lambda c: c.execute(
            "INSERT INTO party_sessions(token_hash, case_number, party_name, created_at, expires_at) VALUES (?,?,?,?,?)",
            (party.token_hash, case, party_name, now, party.expires_at)))
        await self._record("party_login", actor=party.actor, where=f"http:{ip}", data={"case_number": case})
        return token, party

    def _locked_until(self, keys: tuple[str, ...]) -> float:
        rows = self._store.query(f"SELECT MAX(locked_until) FROM party_failures WHERE key IN ({','.join('?' * len(keys))})",
                                 keys)
        return float(rows[0][0] or 0.0)

    def _fail(self, conn: Any, keys: tuple[str, ...], now: float) -> None:
        c = self._config
        for key, limit in zip(keys, (c.max_failures, 4 * c.max_failures)):
            row = conn.execute("SELECT failures FROM party_failures WHERE key=?", (key,)).fetchone()
            failures = (row[0] if row else 0) + 1
            locked = 0.0
            if failures >= limit:
                locked = now + min(c.lockout_s * 2 ** (failures - limit), c.max_lockout_s)
            conn.execute("INSERT INTO party_failures(key, failures, locked_until, last_at) VALUES (?,?,?,?) "
                         "ON CONFLICT(key) DO UPDATE SET failures=excluded.failures, "
                         "locked_until=excluded.locked_until, last_at=excluded.last_at", (key, failures, locked, now))

    async def party(self, token: str | None) -> Party:
        if not token:
            raise Unauthorized("not logged in: use your case number and access code", code="not_logged_in")
        rows = await self._store.run(self._store.query, "SELECT case_number, party_name, expires_at FROM party_sessions "
                                     "WHERE token_hash=?", (_hash(token),))
        if not rows:
            raise Unauthorized("unknown or ended portal session", code="bad_token")
        case, name, expires = rows[0]
        if expires <= self._clock():
            raise Unauthorized("portal session expired: ask the court for a new access code", code="session_expired")
        return Party(case, name, _hash(token), expires)

    async def case_actions(self, party: Party) -> list[dict[str, Any]]:
        out = []
        for action in await self._actions.list(None):
            if action.case_number == party.case_number:
                v = action.view()
                out.append({k: v.get(k) for k in ("id", "case_number", "title", "type", "state", "started_at",
                                                  "ended_at", "planned_at")})
        return out

    # requests ----------------------------------------------------------------------------------
    async def create_request(self, party: Party, body: Any, ip: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise BadRequest("expected a JSON object", code="bad_request")
        action_id = body.get("action_id")
        actions = {a["id"]: a for a in await self.case_actions(party)}
        if not isinstance(action_id, str) or action_id not in actions:
            await self._record("access_denied", actor=party.actor, where=f"http:{ip}", outcome="denied",
                               data={"case_number": party.case_number, "reason": "action not of this case",
                                     "action_id": str(action_id)[:80]})
            raise NotFound("no such action in your case", code="unknown_action")
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
            raise BadRequest(f"reason: say why you need the footage (1-{MAX_REASON} characters)", code="bad_reason")
        start, end = _time_range(body.get("from"), body.get("to"))
        now = self._clock()
        doc = {
            "id": f"fr-{secrets.token_hex(6)}", "case_number": party.case_number, "party_name": party.name,
            "action_id": action_id, "action_title": actions[action_id]["title"], "from": start, "to": end,
            "reason": reason.strip(), "state": "pending", "created_at": now, "updated_at": now,
            "history": [{"at": now, "by": party.actor, "what": "requested", "message": reason.strip()}],
            "decision": None, "regions": [], "export": None, "links": [],
        }
        await self._store.write(lambda c: self._save(c, doc))
        await self._record("request_created", actor=party.actor, where=f"http:{ip}",
                           data={"request_id": doc["id"], "case_number": party.case_number, "action_id": action_id,
                                 "from": start, "to": end})
        await self._changed(doc)
        return doc

    def _save(self, conn: Any, doc: dict[str, Any]) -> None:
        doc["updated_at"] = self._clock()
        conn.execute("INSERT INTO footage_requests(id, case_number, state, doc, created_at, updated_at) VALUES "
                     "(?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET state=excluded.state, doc=excluded.doc, "
                     "updated_at=excluded.updated_at",
                     (doc["id"], doc["case_number"], doc["state"], json.dumps(doc, ensure_ascii=False),
                      doc["created_at"], doc["updated_at"]))

    async def get(self, request_id: str) -> dict[str, Any]:
        if not isinstance(request_id, str) or len(request_id) > 40:
            raise NotFound("unknown request", code="unknown_request")
        rows = await self._store.run(self._store.query, "SELECT doc FROM footage_requests WHERE id=?", (request_id,))
        if not rows:
            raise NotFound(f"unknown request {request_id[:40]!r}", code="unknown_request")
        return json.loads(rows[0][0])  # type: ignore[no-any-return]

    async def get_for(self, party: Party, request_id: str) -> dict[str, Any]:
        doc = await self.get(request_id)
        if doc["case_number"] != party.case_number:
            raise NotFound("unknown request", code="unknown_request")
        return doc

    async def list(self, *, case_number: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT doc FROM footage_requests", []
        where = []
        if case_number is not None:
            where.append("case_number=?")
            args.append(case_number)
        if state is not None:
            if state not in STATES:
                raise BadRequest(f"state must be one of {', '.join(STATES)}", code="bad_state")
            where.append("state=?")
            args.append(state)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC LIMIT 500"
        rows = await self._store.run(self._store.query, sql, tuple(args))
        return [json.loads(r[0]) for r in rows]

    async def reply(self, party: Party, request_id: str, message: Any, ip: str) -> dict[str, Any]:
        doc = await self.get_for(party, request_id)
        if doc["state"] != "more_info":
            raise Conflict("the court has not asked for more information on this request", code="not_waiting")
        if not isinstance(message, str) or not message.strip() or len(message) > MAX_REASON:
            raise BadRequest(f"message: 1-{MAX_REASON} characters", code="bad_message")
        doc["history"].append({"at": self._clock(), "by": party.actor, "what": "replied", "message": message.strip()})
        doc["state"] = "pending"
        await self._store.write(lambda c: self._save(c, doc))
        await self._record("request_info", actor=party.actor, where=f"http:{ip}", data={"request_id": request_id})
        await self._changed(doc)
        return doc

    async def decide(self, request_id: str, body: Any, who: str, ip: str,
                     recordings_of: Callable[[str], Awaitable[list[dict[str, Any]]]]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise BadRequest("expected a JSON object", code="bad_request")
        doc = await self.get(request_id)
        decision = body.get("decision")
        if decision not in ("approve", "refuse", "more_info"):
            raise BadRequest("decision must be approve, refuse or more_info", code="bad_decision")
        if doc["state"] not in ("pending", "more_info"):
            raise Conflict(f"request is {doc['state']}, not waiting for a decision", code="already_decided")
        reason = body.get("reason", "")
        if not isinstance(reason, str) or len(reason) > MAX_REASON:
            raise BadRequest("reason must be text", code="bad_reason")
        if decision in ("refuse", "more_info") and not reason.strip():
            raise BadRequest("say why (reason), the party will read it", code="bad_reason")
        now = self._clock()
        if decision == "approve":
            recordings = await recordings_of(doc["action_id"])
            rid = body.get("recording_id") or (recordings[0]["recording_id"] if recordings else None)
            if rid not in {r["recording_id"] for r in recordings}:
                raise BadRequest("recording_id: choose one of the action's recordings "
                                 f"({', '.join(r['recording_id'] for r in recordings) or 'none recorded'})",
                                 code="bad_recording")
            until = body.get("release_until")
            max_until = now + self._config.link_max_lifetime_s
            until = _parse_time(until, "release_until") if until is not None else max_until
            if until <= now:
                raise BadRequest("release_until must be in the future", code="bad_time")
            start, end = _time_range(body.get("from", doc["from"]), body.get("to", doc["to"]))
            doc["decision"] = {"decision": "approve", "by": who, "at": now, "recording_id": rid,
                               "release_until": min(until, max_until), "from": start, "to": end,
                               "include_audio": bool(body.get("include_audio", True)), "reason": reason.strip()}
            doc["state"] = "approved"
        else:
            doc["decision"] = {"decision": decision, "by": who, "at": now, "reason": reason.strip()}
            doc["state"] = "refused" if decision == "refuse" else "more_info"
        doc["history"].append({"at": now, "by": f"user:{who}", "what": decision, "message": reason.strip()})
        await self._store.write(lambda c: self._save(c, doc))
        await self._record(f"request_{'approved' if decision == 'approve' else 'refused' if decision == 'refuse' else 'more_info'}",
                           actor=f"user:{who}", where=f"http:{ip}",
                           data={"request_id": request_id, "case_number": doc["case_number"], "decision": doc["decision"]})
        await self._changed(doc)
        return doc

    async def set_regions(self, request_id: str, regions: Any, who: str) -> dict[str, Any]:
        doc = await self.get(request_id)
        if doc["state"] not in ("approved", "failed", "ready"):
            raise Conflict("blur regions are set after approval, before export", code="not_approved")
        if not isinstance(regions, list) or len(regions) > 200:
            raise BadRequest("regions: a list of at most 200 regions", code="bad_regions")
        clean = []
        for i, r in enumerate(regions):
            if not isinstance(r, dict):
                raise BadRequest(f"regions[{i}]: expected an object", code="bad_regions")
            try:
                item = {k: float(r[k]) for k in ("x", "y", "w", "h")}
                item["start_s"] = float(r.get("start_s", 0.0))
                item["end_s"] = float(r.get("end_s", 1e9))
            except (KeyError, TypeError, ValueError):
                raise BadRequest(f"regions[{i}]: x, y, w, h (pixels) and optional start_s, end_s", code="bad_regions") from None
            if min(item["w"], item["h"]) <= 0 or min(item["x"], item["y"]) < 0 or item["end_s"] <= item["start_s"]:
                raise BadRequest(f"regions[{i}]: empty or negative box or time span", code="bad_regions")
            action = r.get("action", "blur")
            if action not in ("blur", "keep"):
                raise BadRequest(f"regions[{i}].action: blur or keep", code="bad_regions")
            reason = str(r.get("reason", "manual"))[:200]
            clean.append({**item, "action": action, "reason": reason, "by": who})
        doc["regions"] = clean
        doc["history"].append({"at": self._clock(), "by": f"user:{who}", "what": "regions", "message": f"{len(clean)} region(s)"})
        await self._store.write(lambda c: self._save(c, doc))
        await self._changed(doc)
        return doc

    async def notify(self, doc: dict[str, Any]) -> None:
        """Push the request to consoles without storing it (export progress between stores)."""
        await self._changed(doc)

    async def update(self, doc: dict[str, Any], *, emit: bool = True) -> None:
        await self._store.write(lambda c: self._save(c, doc))
        if emit:
            await self._changed(doc)

    # links -------------------------------------------------------------------------------------
    async def issue_link(self, doc: dict[str, Any], token_for: Callable[[str], str]) -> dict[str, Any]:
        """A new link for a ready request; ``token_for(link_id)`` derives its secret token, which
        is stored only as a hash."""
        now = self._clock()
        expires = min(doc["decision"]["release_until"], now + self._config.link_max_lifetime_s)
        link = {"id": f"ln-{secrets.token_hex(6)}", "request_id": doc["id"], "created_at": now, "expires_at": expires}
        token = token_for(link["id"])
        await self._store.write(lambda c: c.execute(
            "INSERT INTO party_links(id, token_hash, request_id, created_at, expires_at) VALUES (?,?,?,?,?)",
            (link["id"], _hash(token), doc["id"], now, expires)))
        return link

    async def link(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The link and its request; 404 for an unknown (tampered) token, 410 for expired or revoked."""
        if not isinstance(token, str) or not 20 <= len(token) <= 64 or not token.replace("-", "").replace("_", "").isalnum():
            raise NotFound("unknown link", code="unknown_link")
        rows = await self._store.run(self._store.query, "SELECT id, request_id, created_at, expires_at, revoked_at, uses "
                                     "FROM party_links WHERE token_hash=?", (_hash(token),))
        if not rows:
            raise NotFound("unknown link", code="unknown_link")
        lid, rid, created, expires, revoked, uses = rows[0]
        link = {"id": lid, "request_id": rid, "created_at": created, "expires_at": expires, "revoked_at": revoked,
                "uses": uses}
        if revoked is not None:
            raise Gone("this link was revoked by the court", code="link_revoked")
        if expires <= self._clock():
            raise Gone("this link has expired; ask the court for a new one", code="link_expired")
        doc = await self.get(rid)
        if doc["state"] != "ready":
            raise Gone(f"the export of this request is {doc['state']}", code="not_available")
        return link, doc

    async def used(self, link_id: str) -> None:
        await self._store.write(lambda c: c.execute("UPDATE party_links SET uses=uses+1 WHERE id=?", (link_id,)))

    async def revoke_link(self, link_id: str, who: str, ip: str) -> dict[str, Any]:
        now = self._clock()
        rows = await self._store.run(self._store.query, "SELECT request_id, revoked_at FROM party_links WHERE id=?",
                                     (link_id,))
        if not rows:
            raise NotFound(f"unknown link {link_id[:40]!r}", code="unknown_link")
        if rows[0][1] is None:
            await self._store.write(lambda c: c.execute(
                "UPDATE party_links SET revoked_at=?, revoked_by=? WHERE id=?", (now, who, link_id)))
        doc = await self.get(rows[0][0])
        for link in doc["links"]:
            if link["id"] == link_id:
                link["revoked_at"] = link.get("revoked_at") or now
        doc["history"].append({"at": now, "by": f"user:{who}", "what": "link_revoked", "message": link_id})
        await self.update(doc)
        await self._record("link_revoked", actor=f"user:{who}", where=f"http:{ip}",
                           data={"request_id": doc["id"], "link_id": link_id})
        return doc

    def party_view(self, doc: dict[str, Any]) -> dict[str, Any]:
        """What the party sees of its request (no internal paths, no reviewer regions)."""
        export = doc.get("export") or {}
        decision = doc.get("decision") or {}
        return {
            "id": doc["id"], "action_id": doc["action_id"], "action_title": doc.get("action_title"),
            "from": doc["from"], "to": doc["to"], "reason": doc["reason"], "state": doc["state"],
            "created_at": doc["created_at"], "updated_at": doc["updated_at"],
            "messages": [{"at": h["at"], "what": h["what"], "message": h.get("message", "")}
                         for h in doc["history"] if h["what"] in ("requested", "replied", "refuse", "more_info",
                                                                  "approve", "ready", "failed", "link_revoked")],
            "release_until": decision.get("release_until"),
            "progress": export.get("progress"),
            "links": [{k: v for k, v in link.items() if k in ("id", "url", "video_url", "expires_at", "revoked_at")}
                      for link in doc.get("links", []) if link.get("revoked_at") is None],
        }


def _parse_time(value: Any, name: str) -> float:
    from geo.fix import FixError, parse_time

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return parse_time(value)
    except (FixError, TypeError) as exc:
        raise BadRequest(f"{name}: {exc}", code="bad_time") from None


def _time_range(start: Any, end: Any) -> tuple[float | None, float | None]:
    s = _parse_time(start, "from") if start not in (None, "") else None
    e = _parse_time(end, "to") if end not in (None, "") else None
    if s is not None and e is not None and e <= s:
        raise BadRequest("to must be after from", code="bad_time")
    return s, e


def check_owner(doc: dict[str, Any], party: Party) -> None:
    if doc["case_number"] != party.case_number:
        raise Forbidden("not your case")

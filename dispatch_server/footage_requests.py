"""Footage requests (调取申请): a party asks for the footage of an action, the court decides.

A party asks (an action of its case, optionally a time range, a reason); a judge or supervisor
approves (choosing the recording, the time range, whether audio is kept and until when the
release holds), refuses with a reason, or asks for more information, which the party answers.
After approval the reviewer marks what to blur, and the export runs
(:mod:`dispatch_server.exports`); the party then gets links (:mod:`dispatch_server.party_links`).

A request is stored as one JSON document whose ``history`` records every step; every step is
also written to the evidence ledger through ``record``. ``changed`` pushes the document to
consoles.
"""

from __future__ import annotations

import builtins
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from utctime import iso_millis

from .config import PartyConfig
from .errors import BadRequest, Conflict, NotFound
from .party_access import Party, PartyAccess, Record
from .stores.database import Database

logger = logging.getLogger(__name__)

# review: exported, waiting for the court to watch and release it; ready: released, the party has a link
STATES = ("pending", "more_info", "approved", "refused", "exporting", "review", "ready", "failed", "revoked")
DECISIONS = ("approve", "refuse", "more_info")

Changed = Callable[[dict[str, Any]], Awaitable[None]]
RecordingsOf = Callable[[str], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True)
class NewFootageRequest:
    """A party's request (parsed at the edge): the action, why, and optionally a time range."""

    action_id: str
    reason: str
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class Decision:
    """The court's decision (parsed at the edge). For an approval, the time range defaults to the
    request's for each end not given (``from_given``/``to_given``)."""

    decision: str
    reason: str = ""
    recording_id: str | None = None
    release_until: float | None = None
    start: float | None = None
    end: float | None = None
    from_given: bool = False
    to_given: bool = False
    include_audio: bool = True


@dataclass(frozen=True)
class BlurRegion:
    """A box to blur or keep in the export, in video pixels, over a span of recording time."""

    x: float
    y: float
    w: float
    h: float
    start_s: float = 0.0
    end_s: float = 1e9
    action: str = "blur"
    reason: str = "manual"


def iso_or_none(ts: float | None) -> str | None:
    return iso_millis(ts) if ts is not None else None


def ledger_decision(decision: dict[str, Any]) -> dict[str, Any]:
    """The decision as the ledger records it: times as UTC ISO text, never epoch seconds."""
    return {k: iso_or_none(v) if k in ("at", "release_until", "from", "to") else v for k, v in decision.items()}


def check_range(start: float | None, end: float | None) -> None:
    if start is not None and end is not None and end <= start:
        raise BadRequest("to must be after from", code="bad_time")


class FootageRequests:
    def __init__(self, db: Database, config: PartyConfig, access: PartyAccess, record: Record, changed: Changed,
                 clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._config = config
        self._access = access
        self._record = record
        self._changed = changed
        self._clock = clock

    # party side --------------------------------------------------------------------------------
    async def create(self, party: Party, req: NewFootageRequest, ip: str) -> dict[str, Any]:
        actions = {a["id"]: a for a in await self._access.case_actions(party)}
        if req.action_id not in actions:
            await self._record("access_denied", actor=party.actor, where=f"http:{ip}", outcome="denied",
                               data={"case_number": party.case_number, "reason": "action not of this case",
                                     "action_id": req.action_id[:80]})
            raise NotFound("no such action in your case", code="unknown_action")
        check_range(req.start, req.end)
        now = self._clock()
        doc = {
            "id": f"fr-{secrets.token_hex(6)}", "case_number": party.case_number, "party_name": party.name,
            "action_id": req.action_id, "action_title": actions[req.action_id]["title"], "from": req.start,
            "to": req.end, "reason": req.reason, "state": "pending", "created_at": now, "updated_at": now,
            "history": [{"at": now, "by": party.actor, "what": "requested", "message": req.reason}],
            "decision": None, "regions": [], "export": None, "links": [],
        }
        await self._db.write(lambda c: self._save(c, doc))
        await self._record("request_created", actor=party.actor, where=f"http:{ip}",
                           data={"request_id": doc["id"], "case_number": party.case_number,
                                 "action_id": req.action_id, "from": iso_or_none(req.start),
                                 "to": iso_or_none(req.end)})
        await self._changed(doc)
        return doc

    async def reply(self, party: Party, request_id: str, message: str, ip: str) -> dict[str, Any]:
        doc = await self.get_for(party, request_id)
        if doc["state"] != "more_info":
            raise Conflict("the court has not asked for more information on this request", code="not_waiting")
        doc["history"].append({"at": self._clock(), "by": party.actor, "what": "replied", "message": message})
        doc["state"] = "pending"
        await self._db.write(lambda c: self._save(c, doc))
        await self._record("request_info", actor=party.actor, where=f"http:{ip}", data={"request_id": request_id})
        await self._changed(doc)
        return doc

    # reading -----------------------------------------------------------------------------------
    def _save(self, conn: Any, doc: dict[str, Any]) -> None:
        doc["updated_at"] = self._clock()
        conn.execute("INSERT INTO footage_requests(id, case_number, state, doc, created_at, updated_at) VALUES "
                     "(?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET state=excluded.state, doc=excluded.doc, "
                     "updated_at=excluded.updated_at",
                     (doc["id"], doc["case_number"], doc["state"], json.dumps(doc, ensure_ascii=False),
                      doc["created_at"], doc["updated_at"]))

    async def get(self, request_id: str) -> dict[str, Any]:
        if len(request_id) > 40:
            raise NotFound("unknown request", code="unknown_request")
        rows = await self._db.run(self._db.query, "SELECT doc FROM footage_requests WHERE id=?", (request_id,))
        if not rows:
            raise NotFound(f"unknown request {request_id[:40]!r}", code="unknown_request")
        doc: dict[str, Any] = json.loads(rows[0][0])
        return doc

    async def get_for(self, party: Party, request_id: str) -> dict[str, Any]:
        """A request this party made; 404 for any other (another party of the same case included)."""
        doc = await self.get(request_id)
        if doc["case_number"] != party.case_number or doc["party_name"] != party.name:
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
        rows = await self._db.run(self._db.query, sql, tuple(args))
        return [json.loads(r[0]) for r in rows]

    # court side --------------------------------------------------------------------------------
    async def decide(self, request_id: str, d: Decision, who: str, ip: str,
                     recordings_of: RecordingsOf) -> dict[str, Any]:
        doc = await self.get(request_id)
        if doc["state"] not in ("pending", "more_info"):
            raise Conflict(f"request is {doc['state']}, not waiting for a decision", code="already_decided")
        if d.decision in ("refuse", "more_info") and not d.reason:
            raise BadRequest("say why (reason), the party will read it", code="bad_reason")
        now = self._clock()
        if d.decision == "approve":
            recordings = await recordings_of(doc["action_id"])
            rid = d.recording_id or (recordings[0]["recording_id"] if recordings else None)
            if rid not in {r["recording_id"] for r in recordings}:
                raise BadRequest("recording_id: choose one of the action's recordings "
                                 f"({', '.join(r['recording_id'] for r in recordings) or 'none recorded'})",
                                 code="bad_recording")
            max_until = now + self._config.link_max_lifetime_s
            until = d.release_until if d.release_until is not None else max_until
            if until <= now:
                raise BadRequest("release_until must be in the future", code="bad_time")
            start = d.start if d.from_given else doc["from"]
            end = d.end if d.to_given else doc["to"]
            check_range(start, end)
            doc["decision"] = {"decision": "approve", "by": who, "at": now, "recording_id": rid,
                               "release_until": min(until, max_until), "from": start, "to": end,
                               "include_audio": d.include_audio, "reason": d.reason}
            doc["state"] = "approved"
        else:
            doc["decision"] = {"decision": d.decision, "by": who, "at": now, "reason": d.reason}
            doc["state"] = "refused" if d.decision == "refuse" else "more_info"
        doc["history"].append({"at": now, "by": f"user:{who}", "what": d.decision, "message": d.reason})
        await self._db.write(lambda c: self._save(c, doc))
        entry = {"approve": "request_approved", "refuse": "request_refused", "more_info": "request_more_info"}
        await self._record(entry[d.decision], actor=f"user:{who}", where=f"http:{ip}",
                           data={"request_id": request_id, "case_number": doc["case_number"],
                                 "decision": ledger_decision(doc["decision"])})
        await self._changed(doc)
        return doc

    async def set_regions(self, request_id: str, regions: builtins.list[BlurRegion], who: str) -> dict[str, Any]:
        doc = await self.get(request_id)
        if doc["state"] not in ("approved", "failed", "review"):
            raise Conflict("blur regions are set after approval, before the export is released", code="not_approved")
        doc["regions"] = [{"x": r.x, "y": r.y, "w": r.w, "h": r.h, "start_s": r.start_s, "end_s": r.end_s,
                           "action": r.action, "reason": r.reason, "by": who} for r in regions]
        doc["history"].append({"at": self._clock(), "by": f"user:{who}", "what": "regions",
                               "message": f"{len(regions)} region(s)"})
        await self._db.write(lambda c: self._save(c, doc))
        await self._changed(doc)
        return doc

    async def notify(self, doc: dict[str, Any]) -> None:
        """Push the request to consoles without storing it (export progress between stores)."""
        await self._changed(doc)

    async def update(self, doc: dict[str, Any], *, emit: bool = True) -> None:
        await self._db.write(lambda c: self._save(c, doc))
        if emit:
            await self._changed(doc)


def court_view(doc: dict[str, Any]) -> dict[str, Any]:
    """What court staff see of a request: everything but the server's file paths."""
    export = {k: v for k, v in (doc.get("export") or {}).items() if not k.endswith("_path")}
    return {**doc, "export": export or doc.get("export")}


def party_view(doc: dict[str, Any]) -> dict[str, Any]:
    """What the party sees of its request (no internal paths, no reviewer regions)."""
    export = doc.get("export") or {}
    decision = doc.get("decision") or {}
    return {
        "id": doc["id"], "action_id": doc["action_id"], "action_title": doc.get("action_title"),
        "from": doc["from"], "to": doc["to"], "reason": doc["reason"], "state": doc["state"],
        "created_at": doc["created_at"], "updated_at": doc["updated_at"],
        "messages": [{"at": h["at"], "what": h["what"], "message": h.get("message", "")}
                     for h in doc["history"] if h["what"] in ("requested", "replied", "refuse", "more_info",
                                                              "approve", "released", "ready", "failed",
                                                              "link_revoked")],
        "release_until": decision.get("release_until"),
        "progress": export.get("progress"),
        "links": [{k: v for k, v in link.items() if k in ("id", "url", "video_url", "expires_at", "revoked_at")}
                  for link in doc.get("links", []) if link.get("revoked_at") is None],
    }

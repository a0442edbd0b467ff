"""Download links of a ready export: bound to one request, expiring, revocable, counted on every use.

A link's secret token is derived from its id by the export service (``token_for``) and stored
here only as a hash; the party's portal shows it on demand.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Callable

from .config import PartyConfig
from .errors import Gone, NotFound
from .footage_requests import FootageRequests
from .party_access import Record, token_hash
from .stores.database import Database


class PartyLinks:
    def __init__(self, db: Database, config: PartyConfig, requests: FootageRequests, record: Record,
                 clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._config = config
        self._requests = requests
        self._record = record
        self._clock = clock

    async def issue(self, doc: dict[str, Any], token_for: Callable[[str], str]) -> dict[str, Any]:
        """A new link for a ready request, valid until its release date (at most ``link_max_lifetime_s``)."""
        now = self._clock()
        expires = min(doc["decision"]["release_until"], now + self._config.link_max_lifetime_s)
        link = {"id": f"ln-{secrets.token_hex(6)}", "request_id": doc["id"], "created_at": now, "expires_at": expires}
        token = token_for(link["id"])
        await self._db.write(lambda c: c.execute(
            "INSERT INTO party_links(id, token_hash, request_id, created_at, expires_at) VALUES (?,?,?,?,?)",
            (link["id"], token_hash(token), doc["id"], now, expires)))
        return link

    async def open(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The link and its request; 404 for an unknown (tampered) token, 410 for expired or revoked."""
        rows = await self._db.run(self._db.query, "SELECT id, request_id, created_at, expires_at, revoked_at, uses "
                                  "FROM party_links WHERE token_hash=?", (token_hash(token),))
        if not rows:
            raise NotFound("unknown link", code="unknown_link")
        lid, rid, created, expires, revoked, uses = rows[0]
        link = {"id": lid, "request_id": rid, "created_at": created, "expires_at": expires, "revoked_at": revoked,
                "uses": uses}
        if revoked is not None:
            raise Gone("this link was revoked by the court", code="link_revoked")
        if expires <= self._clock():
            raise Gone("this link has expired; ask the court for a new one", code="link_expired")
        doc = await self._requests.get(rid)
        if doc["state"] != "ready":
            raise Gone(f"the export of this request is {doc['state']}, not released to the party",
                       code="not_available")
        return link, doc

    async def used(self, link_id: str) -> None:
        await self._db.write(lambda c: c.execute("UPDATE party_links SET uses=uses+1 WHERE id=?", (link_id,)))

    async def revoke(self, link_id: str, who: str, ip: str) -> dict[str, Any]:
        now = self._clock()
        rows = await self._db.run(self._db.query, "SELECT request_id, revoked_at FROM party_links WHERE id=?",
                                  (link_id,))
        if not rows:
            raise NotFound(f"unknown link {link_id[:40]!r}", code="unknown_link")
        if rows[0][1] is None:
            await self._db.write(lambda c: c.execute(
                "UPDATE party_links SET revoked_at=?, revoked_by=? WHERE id=?", (now, who, link_id)))
        doc = await self._requests.get(rows[0][0])
        for link in doc["links"]:
            if link["id"] == link_id:
                link["revoked_at"] = link.get("revoked_at") or now
        doc["history"].append({"at": now, "by": f"user:{who}", "what": "link_revoked", "message": link_id})
        await self._requests.update(doc)
        await self._record("link_revoked", actor=f"user:{who}", where=f"http:{ip}",
                           data={"request_id": doc["id"], "link_id": link_id})
        return doc

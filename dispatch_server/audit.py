"""The audit trail of dispatch: who did what to which instruction, action, alert or talk session.

Rows are only ever appended. (The tamper-evident evidence ledger of the archive is separate.)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from utctime import iso_seconds

from .stores.database import Database
from .stores.multirow import flat, marks, pieces


@dataclass(frozen=True)
class AuditFilter:
    """Which entries to list; every field given must match.

    ``unit`` matches entries about the unit (subject ``unit:<id>`` or ``detail.unit_id``) and
    those the unit made (actor ``unit:<id>``); ``case`` matches ``detail.case_number``;
    ``verb`` matches a verb or a verb's family (``instruction`` matches ``instruction.queued``);
    ``since``/``until`` are epoch seconds (inclusive, exclusive).
    """

    subject: str | None = None
    actor: str | None = None
    unit: str | None = None
    case: str | None = None
    verb: str | None = None
    since: float | None = None
    until: float | None = None

    def clauses(self, *, seq: str = "n", ts: str = "ts",
                actor_form: Callable[[str], str] = lambda a: a) -> tuple[list[str], tuple[Any, ...]]:
        """SQL conditions (joined with AND) and their arguments, for the database's ``audit``
        table or, with its column names and actor form, the ledger's projection
        (:mod:`recordings.audit_catalog`)."""
        clauses: list[str] = []
        args: list[Any] = []
        if self.subject is not None:
            clauses.append("subject = ?")
            args.append(self.subject)
        if self.actor is not None:
            clauses.append("actor = ?")
            args.append(actor_form(self.actor))
        if self.unit is not None:
            clauses.append("(subject = ? OR actor = ? OR json_extract(detail, '$.unit_id') = ?)")
            args += [f"unit:{self.unit}", f"unit:{self.unit}", self.unit]
        if self.case is not None:
            clauses.append("json_extract(detail, '$.case_number') = ?")
            args.append(self.case)
        if self.verb is not None:
            clauses.append("(verb = ? OR verb LIKE ? ESCAPE '\\')")
            escaped = self.verb.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            args += [self.verb, f"{escaped}.%"]
        if self.since is not None:
            clauses.append(f"{ts} >= ?")
            args.append(self.since)
        if self.until is not None:
            clauses.append(f"{ts} < ?")
            args.append(self.until)
        return clauses, tuple(args)

    def where(self) -> tuple[str, tuple[Any, ...]]:
        clauses, args = self.clauses()
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


class AuditTrail:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    def append_sync(self, conn: Any, actor: str, verb: str, subject: str, **detail: Any) -> None:
        """Append inside a caller's transaction (``conn`` from :meth:`Database.write`)."""
        conn.execute(
            "INSERT INTO audit(ts, actor, verb, subject, detail) VALUES (?,?,?,?,?)",
            (self._clock(), actor, verb, subject, json.dumps(detail, ensure_ascii=False, default=str)),
        )

    def append_many_sync(self, conn: Any, entries: Sequence[tuple[str, str, str, dict[str, Any]]]) -> None:
        """Append ``(actor, verb, subject, detail)`` entries in this order, as :meth:`append_sync`
        does one by one, in a few multi-row statements (not one per entry)."""
        rows = [(self._clock(), actor, verb, subject, json.dumps(detail, ensure_ascii=False, default=str))
                for actor, verb, subject, detail in entries]
        for piece in pieces(rows):
            conn.execute(f"INSERT INTO audit(ts, actor, verb, subject, detail) VALUES {marks(len(piece), 5)}",
                         flat(piece))

    async def append(self, actor: str, verb: str, subject: str, **detail: Any) -> None:
        await self._db.write(lambda c: self.append_sync(c, actor, verb, subject, **detail))

    async def entries(self, subject: str | None = None, limit: int = 500,
                      where: AuditFilter | None = None) -> list[dict[str, Any]]:
        """Newest first; ``ts`` in epoch seconds and ``at`` as ISO 8601 UTC."""
        sql = "SELECT n, ts, actor, verb, subject, detail FROM audit"
        clause, args = (where or AuditFilter(subject=subject)).where()
        sql += clause + " ORDER BY n DESC LIMIT ?"
        rows = await self._db.run(self._db.query, sql, (*args, limit))
        return [
            {"n": n, "ts": ts, "at": iso_seconds(ts), "actor": a, "verb": v, "subject": s, "detail": json.loads(d)}
            for n, ts, a, v, s, d in rows
        ]

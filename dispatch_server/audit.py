"""The audit trail of dispatch: who did what to which instruction, action, alert or talk session.

Rows are only ever appended. (The tamper-evident evidence ledger of the archive is separate.)
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Sequence

from .stores.database import Database
from .stores.multirow import flat, marks, pieces


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

    async def entries(self, subject: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        sql = "SELECT n, ts, actor, verb, subject, detail FROM audit"
        args: tuple[Any, ...] = ()
        if subject is not None:
            sql += " WHERE subject=?"
            args = (subject,)
        sql += " ORDER BY n DESC LIMIT ?"
        rows = await self._db.run(self._db.query, sql, (*args, limit))
        return [
            {"n": n, "ts": ts, "actor": a, "verb": v, "subject": s, "detail": json.loads(d)}
            for n, ts, a, v, s, d in rows
        ]

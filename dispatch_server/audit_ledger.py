"""The operators' audit trail in the evidence ledger: tamper-evident, and what ``/api/audit`` shows.

Every audit row (:mod:`dispatch_server.audit`) is written in the same SQLite transaction as the
action it records, so an action is never acknowledged without it and a ``kill -9`` loses neither.
That table is the outbox: this service appends its rows, in order, to the evidence ledger as
``operator_action`` entries (many rows, one write and one ``fsync``), within
:data:`SHIP_INTERVAL_S` of the action and again at every start for rows a crash left behind, and
notes each row's ledger index. A crash between the append and that note is repaired at the next
start from the catalog (the ledger's projection), so no row is written twice. A row deleted from
the database before it reached the ledger leaves a hole in the sequence: an ``audit_gap`` entry
records it and operators are alarmed.

Several nodes on one PostgreSQL database share the table: one of them ships it
(:meth:`Database.hold`, a session advisory lock), and when it dies the next takes over from the last
row any node shipped, so a row reaches one ledger once and the interleaved rows of the nodes are no
hole. (A shipper killed between its append and its note leaves those rows to be shipped again by
the next one: in two ledgers, never in none.)

``/api/audit`` answers from the ledger's projection (:meth:`recordings.catalog.Catalog.operator_actions`),
plus the few rows not shipped yet (``ledger_index`` null): editing or deleting rows in the
database changes nothing it shows, and ``dispatch-audit verify`` checks every entry.
"""

from __future__ import annotations

import asyncio
import json
import logging
from functools import partial
from typing import Any, Awaitable, Callable

from utctime import iso_millis, iso_seconds

from .audit import AuditFilter
from .evidence_catalog import EvidenceCatalog
from .stores.database import Database

logger = logging.getLogger(__name__)

SHIP_INTERVAL_S = 0.2  # an audit row reaches the ledger this soon after its transaction
BATCH = 500  # rows per ledger write
ENTRY_TYPE = "operator_action"
SHIPPER = 0x61756474  # Database.hold key: the one node of a cluster that ships the trail ("audt")
GAP_TYPE = "audit_gap"

Alarm = Callable[[str, str, dict[str, Any]], Awaitable[None]]


def ledger_actor(actor: str) -> str:
    """The ledger's form of an audit actor: a bare user name becomes ``user:<name>``."""
    return actor if actor == "system" or ":" in actor else f"user:{actor}"


def _mark(conn: Any, marks: list[tuple[int, int]]) -> None:
    conn.executemany("UPDATE audit SET ledger_index=? WHERE n=?", marks)


def outcome_of(verb: str) -> str:
    return "denied" if verb.endswith(".failed") else "ok"


class AuditLedger:
    def __init__(self, db: Database, evidence: EvidenceCatalog, alarm: Alarm,
                 interval_s: float = SHIP_INTERVAL_S) -> None:
        self._db = db
        self._evidence = evidence
        self._alarm = alarm
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._last_seq = 0
        self._shipper = False  # this node ships the trail (Database.hold); in a cluster one node does

    async def start(self) -> None:
        """Note the rows a crash shipped without noting them, ship what is pending, then follow."""
        await self._evidence.sync()
        catalog = self._evidence.catalog
        shipped = await self._db.run(self._db.query, "SELECT COALESCE(MAX(ledger_index), -1) FROM audit")
        # On a shared database ledger indexes are of several nodes' ledgers: look at all of this one's.
        after = int(shipped[0][0]) if self._db.engine == "sqlite" else -1
        found = await asyncio.to_thread(catalog.operator_action_seqs, after)
        if found:
            await self._db.write(lambda c: c.executemany(
                "UPDATE audit SET ledger_index=? WHERE n=? AND ledger_index IS NULL", [(i, n) for n, i in found]))
        self._last_seq = await asyncio.to_thread(catalog.last_operator_action_seq)
        await self.ship()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="audit-ledger")

    async def close(self) -> None:
        """Stop following; ship what is pending (a clean stop leaves the ledger complete)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.ship()
        except Exception as exc:
            logger.error("audit rows not shipped at shutdown (%s); the next start ships them", exc)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.ship()
            except Exception as exc:
                logger.error("audit rows not shipped to the ledger yet (%s); kept and retried", exc)
                await asyncio.sleep(5.0)

    async def ship(self) -> int:
        """Append the rows not in the ledger yet, in order; returns how many."""
        if self._evidence.archive.refused:
            return 0
        total = 0
        async with self._lock:
            if not await self._db.run(self._db.hold, SHIPPER):
                self._shipper = False  # another node ships: both shipping would write rows twice
                return 0
            if not self._shipper:  # (again) the shipper: go on after what any node shipped
                done = await self._db.run(self._db.query,
                                          "SELECT COALESCE(MAX(n), 0) FROM audit WHERE ledger_index IS NOT NULL")
                self._last_seq, self._shipper = max(self._last_seq, int(done[0][0])), True
            while True:
                rows = await self._db.run(self._db.query, "SELECT n, ts, actor, verb, subject, detail FROM audit "
                                          "WHERE ledger_index IS NULL ORDER BY n LIMIT ?", (BATCH,))
                if not rows:
                    return total
                items: list[tuple[str, str, str | None, str, dict[str, Any]]] = []
                positions: list[int | None] = []  # the row number behind each item (None: a gap entry)
                for n, ts, actor, verb, subject, detail in rows:
                    if n > self._last_seq + 1:
                        items.append((GAP_TYPE, "system", "dispatch", "failed",
                                      {"from_seq": self._last_seq + 1, "to_seq": n - 1}))
                        positions.append(None)
                        await self._gap_alarm(self._last_seq + 1, n - 1)
                    try:
                        parsed = json.loads(detail)
                    except ValueError:
                        parsed = {"unparsed": detail}
                    items.append((ENTRY_TYPE, ledger_actor(actor), "dispatch", outcome_of(verb),
                                  {"seq": n, "at": iso_millis(ts), "verb": verb, "subject": subject,
                                   "detail": parsed if isinstance(parsed, dict) else {"value": parsed}}))
                    positions.append(n)
                    self._last_seq = n
                written = await self._evidence.archive.record_many(items)
                marks = [(e["index"], n) for e, n in zip(written, positions, strict=True) if n is not None]
                await self._db.write(partial(_mark, marks=marks))
                total += len(marks)

    async def _gap_alarm(self, first: int, last: int) -> None:
        message = (f"操作审计记录 {first}..{last} 在写入证据账本前从数据库中消失 / audit rows {first}..{last} vanished "
                   "from the database before they reached the evidence ledger")
        logger.error("%s", message)
        try:
            await self._alarm("audit_gap", message, {"from_seq": first, "to_seq": last})
        except Exception:
            logger.exception("audit gap alarm not raised")

    async def entries(self, where: AuditFilter, limit: int = 500) -> list[dict[str, Any]]:
        """The trail newest first, as ``where`` filters it: what the ledger holds, and the rows
        not shipped yet."""
        await self._evidence.sync()
        pending_where, pending_args = where.clauses()
        sql = "SELECT n, ts, actor, verb, subject, detail FROM audit WHERE " + " AND ".join(
            ["ledger_index IS NULL", *pending_where])
        pending = await self._db.run(self._db.query, sql + " ORDER BY n DESC LIMIT ?", (*pending_args, limit))
        shipped_where, shipped_args = where.clauses(seq="seq", ts="at", actor_form=ledger_actor)
        shipped = await asyncio.to_thread(self._evidence.catalog.operator_actions, shipped_where, shipped_args,
                                          limit)
        seen = {e["n"] for e in shipped}
        rows = [{"n": n, "ts": ts, "actor": a, "verb": v, "subject": s, "detail": json.loads(d), "ledger_index": None}
                for n, ts, a, v, s, d in pending if n not in seen]
        out = sorted(rows + shipped, key=lambda e: e["n"], reverse=True)[:limit]
        for e in out:
            e["at"] = iso_seconds(e["ts"]) if e["ts"] is not None else None
        return out

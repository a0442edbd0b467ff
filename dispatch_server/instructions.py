"""Instructions to field units, delivered exactly once through a durable per-unit outbox.

Each instruction gets the next ``seq`` of its unit in the same SQLite transaction that stores it
(synchronous=FULL), so an acknowledged ``POST /api/instructions`` survives ``kill -9``. Delivery is
pulled by the unit (see docs/api.md): ``instructions_pending`` → ``sync`` → ``received`` → apply →
``instruction_state``. ``received`` is the commit point: the server answers which ids are now
delivered and which expired or were cancelled first, and the client applies only the delivered
ones. An instruction still queued when its TTL passes is expired by the sweeper (or at
``received``) and never delivered; one an operator cancels while it is queued is never delivered
either. Cancel and ``received`` are serialized by the database (each reads the state and writes
the next in one transaction), so exactly one of them wins.

``reason`` is either a machine code the server wrote (:data:`REASON_CODES`: the console has a
text for each) or the officer's own words with a refusal.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable, Iterable

from utctime import iso_seconds

from .actions import ActionStore
from .alerts import AlertService
from .audit import AuditTrail
from .auth import Person
from .errors import BadRequest, Conflict, NotFound
from .metrics import Metrics
from .stores.accounts import Accounts
from .stores.database import Database
from .stores.multirow import flat, marks, pieces, slots
from .stores.write_group import WriteGroup

logger = logging.getLogger(__name__)

TYPES = ("text", "goto", "record_start", "record_stop", "snapshot", "callback", "end_action")
PRIORITIES = ("low", "normal", "high", "urgent")
STATES = ("queued", "delivered", "acknowledged", "done", "refused", "expired", "cancelled")
UNIT_STATES = ("acknowledged", "done", "refused")
RANK = {"queued": 0, "delivered": 1, "acknowledged": 2, "done": 3, "refused": 3, "expired": 3, "cancelled": 3}
# Reasons the server itself gives (machine codes; a refusal's reason is the officer's text).
REASON_CODES = ("ttl_expired", "cancelled")
MAX_TEXT = 2000
MAX_TTL_S = 7 * 86400
SYNC_LIMIT = 200
COLUMNS = ("id, unit_id, seq, type, payload, priority, state, action_id, case_number, created_by, created_at, "
           "expires_at, ack_deadline_s, delivered_at, acknowledged_at, done_at, refused_at, expired_at, reason, "
           "result, cancelled_at")
MAX_RESULT_BYTES = 4096  # what a unit reports with done/refused (a snapshot id, a distance, ...)
EXPIRED_UNDELIVERED = "ttl_expired"  # a reason code (REASON_CODES)

Notify = Callable[[list[tuple[str, int, list[dict[str, Any]]]]], Awaitable[None]]  # [(unit_id, max_seq, new)]
Emit = Callable[[dict[str, Any]], Awaitable[None]]
OnlineUnits = Callable[[], Awaitable[list[str]]]


@dataclass(frozen=True)
class Instruction:
    id: str
    unit_id: str
    seq: int
    type: str
    payload: dict[str, Any]
    priority: str
    state: str
    action_id: str | None
    case_number: str | None
    created_by: str
    created_at: float
    expires_at: float
    ack_deadline_s: float
    delivered_at: float | None
    acknowledged_at: float | None
    done_at: float | None
    refused_at: float | None
    expired_at: float | None
    reason: str | None
    result: dict[str, Any] | None = None  # what the unit reported with its answer
    cancelled_at: float | None = None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Instruction:
        values = list(row)
        values[4] = json.loads(values[4])
        values[19] = json.loads(values[19]) if values[19] else None
        return cls(*values)

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for k in ("created_at", "expires_at", "delivered_at", "acknowledged_at", "done_at", "refused_at", "expired_at",
                  "cancelled_at"):
            out[k] = iso_seconds(out[k])
        return out

    def wire(self) -> dict[str, Any]:
        """What the unit receives."""
        return {"id": self.id, "seq": self.seq, "type": self.type, "payload": self.payload,
                "priority": self.priority, "expires_at": iso_seconds(self.expires_at), "action_id": self.action_id,
                "case_number": self.case_number}


@dataclass(frozen=True)
class NewInstruction:
    """A validated request for an instruction (parsed at the edge). Exactly one target is set:
    ``unit``, ``action`` (its team) or ``all_units`` (every unit online now). The lifetime is
    ``expires_at`` (epoch seconds) when given, else ``ttl_s`` from the moment it is queued."""

    unit: str | None
    action: str | None
    all_units: bool
    type: str
    payload: dict[str, Any]
    priority: str
    ttl_s: float
    ack_deadline_s: float
    expires_at: float | None = None


@dataclass(frozen=True)
class Receipt:
    """One ``received`` of a unit: the ids it got, and when it said so."""

    unit_id: str
    ids: tuple[str, ...]
    now: float


# What a receipt changed (the instructions as now stored), and which ids are delivered / expired.
ReceiptResult = tuple[list["Instruction"], list[str], list[str]]


def _bad(message: str, code: str = "bad_instruction") -> BadRequest:
    return BadRequest(message, code=code)


class InstructionService:
    def __init__(self, db: Database, accounts: Accounts, audit: AuditTrail, actions: ActionStore,
                 alerts: AlertService, notify_unit: Notify, emit_update: Emit, online_units: OnlineUnits,
                 metrics: Metrics, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._metrics = metrics
        self._accounts = accounts
        self._audit = audit
        self._actions = actions
        self._alerts = alerts
        self._notify = notify_unit
        self._emit = emit_update
        self._online = online_units
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._receipts: WriteGroup[Receipt, ReceiptResult] = WriteGroup(db, self._receive, "receipts")

    async def _changed(self, ins: Instruction) -> None:
        """An instruction reached a new state: count it, time it, tell the consoles."""
        m = self._metrics
        m.instructions.labels(ins.type, ins.state).inc()
        if ins.state == "delivered" and ins.delivered_at is not None:
            m.delivery_seconds.observe(max(0.0, ins.delivered_at - ins.created_at))
        elif ins.state == "acknowledged" and ins.acknowledged_at is not None and ins.delivered_at is not None:
            m.ack_seconds.observe(max(0.0, ins.acknowledged_at - ins.delivered_at))
        await self._emit(ins.view())

    # operator side -------------------------------------------------------------------------
    def _ttl(self, req: NewInstruction, now: float) -> float:
        if req.expires_at is None:
            ttl = req.ttl_s
        else:
            ttl = req.expires_at - now
            if ttl <= 0:
                raise _bad(f"expires_at is {-ttl:.0f} s in the past", "bad_ttl")
        if ttl > MAX_TTL_S:
            raise _bad(f"TTL of {ttl:.0f} s is over the limit of {MAX_TTL_S} s", "bad_ttl")
        return ttl

    async def create(self, req: NewInstruction, person: Person) -> list[Instruction]:
        """Queue the instruction for each target unit, durably, then tell each unit it has mail."""
        ttl = self._ttl(req, self._clock())
        if req.unit is not None:
            if await self._db.run(self._accounts.get_unit, req.unit) is None:
                raise NotFound(f"unknown unit {req.unit!r}", code="unknown_unit")
            units = [req.unit]
        elif req.action is not None:
            action = await self._actions.require(req.action)
            if action.state == "ended":
                raise Conflict(f"action {action.id} has ended", code="action_ended")
            if not action.units:
                raise Conflict(f"action {action.id} has no units in its team", code="empty_team")
            units = list(action.units)
        else:
            units = sorted(await self._online())
            if not units:
                raise Conflict("no unit is online", code="no_online_units")
        running = {u: (a.id, a.case_number) for a in await self._actions.list("running") for u in a.units}
        links: dict[str, tuple[str | None, str | None]] = {u: running.get(u, (None, None)) for u in units}
        now = self._clock()
        created = await self._db.write(lambda c: self._insert(c, req, ttl, units, links, person.username, now))
        await self._notify([(ins.unit_id, ins.seq, [ins.wire()]) for ins in created])
        for ins in created:
            await self._changed(ins)
        logger.info("%s queued %d %s instruction(s): %s", person.username, len(created), req.type,
                    ", ".join(f"{i.id}->{i.unit_id}" for i in created[:5]))
        return created

    def _insert(self, conn: Any, req: NewInstruction, ttl_s: float, units: list[str],
                links: dict[str, tuple[str | None, str | None]], actor: str, now: float) -> list[Instruction]:
        """A broadcast's instructions, sequence numbers and audit entries in a few multi-row
        statements (``stores/multirow.py``), not four statements per unit."""
        last: dict[str, int] = {}
        wanted = list(dict.fromkeys(units))
        for some in pieces(wanted):
            last.update(conn.execute(f"SELECT unit_id, last_seq FROM unit_seq WHERE unit_id IN ({slots(len(some))})",
                                     some).fetchall())
        out = []
        for unit_id in units:
            seq = last[unit_id] = last.get(unit_id, 0) + 1
            action_id, case_number = links[unit_id]
            out.append(Instruction(f"ins-{secrets.token_hex(8)}", unit_id, seq, req.type, req.payload, req.priority,
                                   "queued", action_id, case_number, actor, now, now + ttl_s, req.ack_deadline_s,
                                   None, None, None, None, None, None))
        for seqs in pieces([(unit_id, last[unit_id]) for unit_id in wanted]):
            conn.execute(f"INSERT INTO unit_seq(unit_id, last_seq) VALUES {marks(len(seqs), 2)} "
                         "ON CONFLICT(unit_id) DO UPDATE SET last_seq=excluded.last_seq", flat(seqs))
        payload = json.dumps(req.payload, ensure_ascii=False)
        rows = [(ins.id, ins.unit_id, ins.seq, ins.type, payload, ins.priority, ins.state, ins.action_id,
                 ins.case_number, ins.created_by, ins.created_at, ins.expires_at, ins.ack_deadline_s,
                 None, None, None, None, None, None, None, None) for ins in out]
        for piece in pieces(rows):
            conn.execute(f"INSERT INTO instructions({COLUMNS}) VALUES {marks(len(piece), 21)}", flat(piece))
        self._audit.append_many_sync(conn, [
            (actor, "instruction.queued", ins.id,
             {"unit_id": ins.unit_id, "seq": ins.seq, "type": req.type, "action_id": ins.action_id,
              "case_number": ins.case_number, "ttl_s": ttl_s, "priority": req.priority})
            for ins in out])
        return out

    def _get(self, instruction_id: str) -> Instruction | None:
        rows = self._db.query(f"SELECT {COLUMNS} FROM instructions WHERE id=?", (instruction_id,))
        return Instruction.from_row(rows[0]) if rows else None

    async def get(self, instruction_id: str) -> Instruction:
        ins = await self._db.run(self._get, instruction_id)
        if ins is None:
            raise NotFound(f"unknown instruction {instruction_id!r}", code="unknown_instruction")
        return ins

    async def list(self, *, unit: str | None = None, action: str | None = None, state: str | None = None,
                   limit: int = 200) -> list[Instruction]:
        where, args = [], []
        for col, val in (("unit_id", unit), ("action_id", action), ("state", state)):
            if val is not None:
                where.append(f"{col}=?")
                args.append(val)
        sql = f"SELECT {COLUMNS} FROM instructions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, seq DESC LIMIT ?"
        rows = await self._db.run(self._db.query, sql, (*args, max(1, min(limit, 1000))))
        return [Instruction.from_row(r) for r in rows]

    # unit side -----------------------------------------------------------------------------
    async def sync(self, unit_id: str, after_seq: int) -> builtins.list[Instruction]:
        """Open instructions after ``after_seq``, in order: queued (not expired), and delivered or
        acknowledged but not yet answered (a unit that restarted shows them to its officer again)."""
        now = self._clock()
        rows = await self._db.run(
            self._db.query,
            f"SELECT {COLUMNS} FROM instructions WHERE unit_id=? AND seq>? AND "
            "((state='queued' AND expires_at>?) OR state IN ('delivered', 'acknowledged')) ORDER BY seq LIMIT ?",
            (unit_id, after_seq, now, SYNC_LIMIT),
        )
        return [Instruction.from_row(r) for r in rows]

    async def cancel(self, instruction_id: str, person: Person) -> Instruction:
        """Cancel a queued instruction: it becomes ``cancelled`` (final) and is never delivered.
        409 ``not_cancellable`` once the unit has received it (or it reached another final state)."""
        now = self._clock()

        def apply(conn: Any) -> Instruction:
            row = conn.execute(f"SELECT {COLUMNS} FROM instructions WHERE id=?", (instruction_id,)).fetchone()
            if row is None:
                raise NotFound(f"unknown instruction {instruction_id!r}", code="unknown_instruction")
            ins = Instruction.from_row(row)
            if ins.state != "queued":
                raise Conflict(f"instruction {ins.id} is {ins.state}; only a queued instruction can be cancelled",
                               code="not_cancellable")
            self._transition(conn, ins, "cancelled", now, person.username, reason="cancelled")
            return self._get_in(conn, ins.id)

        ins = await self._db.write(apply)
        logger.info("%s cancelled instruction %s to unit %s", person.username, ins.id, ins.unit_id)
        await self._changed(ins)
        return ins

    async def received(self, unit_id: str, ids: Iterable[str]) -> tuple[builtins.list[str], builtins.list[str]]:
        """Mark the unit's receipt; answer ``(delivered_ids, not_delivered_ids)``: the second are
        those that expired or were cancelled before this moment. Apply only the first.

        The receipts of many units that arrive together are stored together (one savepoint, a
        few statements); each is answered after the commit that holds it."""
        receipt = Receipt(unit_id, tuple(dict.fromkeys(ids)), self._clock())
        changed, delivered, expired = await self._receipts.write(receipt)
        for ins in changed:
            await self._changed(ins)
        return delivered, expired

    def _receive(self, conn: Any, receipts: builtins.list[Receipt]) -> builtins.list[ReceiptResult | Exception]:
        """In the database's transaction: each receipt in turn, as if alone (a receipt naming an
        instruction its unit never got is refused and changes nothing), then every change in a
        few statements."""
        current: dict[str, Instruction] = {}
        wanted = list(dict.fromkeys(iid for r in receipts for iid in r.ids))
        for some in pieces(wanted):
            rows = conn.execute(f"SELECT {COLUMNS} FROM instructions WHERE id IN ({slots(len(some))})",
                                some).fetchall()
            current.update((row[0], Instruction.from_row(row)) for row in rows)
        out: builtins.list[ReceiptResult | Exception] = []
        moves: builtins.list[tuple[Instruction, str]] = []  # (as now stored, actor), in order
        for r in receipts:
            stranger = next((iid for iid in r.ids if iid not in current or current[iid].unit_id != r.unit_id), None)
            if stranger is not None:
                out.append(NotFound(f"instruction {stranger!r} was never sent to unit {r.unit_id!r}",
                                    code="unknown_instruction"))
                continue
            changed, delivered, expired = [], [], []
            for iid in r.ids:
                ins = current[iid]
                if ins.state == "queued" and ins.expires_at <= r.now:
                    ins = current[iid] = replace(ins, state="expired", expired_at=r.now, reason=EXPIRED_UNDELIVERED)
                    moves.append((ins, f"unit:{r.unit_id}"))
                    changed.append(ins)
                    expired.append(iid)
                elif ins.state == "queued":
                    ins = current[iid] = replace(ins, state="delivered", delivered_at=r.now)
                    moves.append((ins, f"unit:{r.unit_id}"))
                    changed.append(ins)
                    delivered.append(iid)
                elif ins.state in ("expired", "cancelled"):
                    expired.append(iid)
                else:
                    delivered.append(iid)  # already delivered: the unit re-syncs after a restart
            out.append((changed, delivered, expired))
        for state in ("delivered", "expired"):
            changes = [(ins.id, getattr(ins, f"{state}_at"), ins.reason) for ins, _ in moves if ins.state == state]
            for piece in pieces(changes):
                conn.execute(f"UPDATE instructions SET state='{state}', {state}_at=v.column2, reason=v.column3 "
                             f"FROM (VALUES {marks(len(piece), 3)}) AS v WHERE instructions.id=v.column1",
                             flat(piece))
        self._audit.append_many_sync(conn, [
            (actor, f"instruction.{ins.state}", ins.id,
             {"unit_id": ins.unit_id, "seq": ins.seq, "action_id": ins.action_id, "case_number": ins.case_number,
              "reason": EXPIRED_UNDELIVERED if ins.state == "expired" else None})
            for ins, actor in moves])
        return out

    def _get_in(self, conn: Any, iid: str) -> Instruction:
        return Instruction.from_row(conn.execute(f"SELECT {COLUMNS} FROM instructions WHERE id=?", (iid,)).fetchone())

    def _transition(self, conn: Any, ins: Instruction, state: str, now: float, actor: str,
                    reason: str | None = None, result: dict[str, Any] | None = None) -> None:
        conn.execute(f"UPDATE instructions SET state=?, {state}_at=?, reason=COALESCE(?, reason), "
                     "result=COALESCE(?, result) WHERE id=?",
                     (state, now, reason, json.dumps(result, ensure_ascii=False) if result else None, ins.id))
        self._audit.append_sync(conn, actor, f"instruction.{state}", ins.id, unit_id=ins.unit_id, seq=ins.seq,
                                action_id=ins.action_id, case_number=ins.case_number, reason=reason,
                                **({"result": result} if result else {}))

    async def set_state(self, unit_id: str, instruction_id: str, state: str, reason: str | None,
                        result: dict[str, Any] | None = None) -> Instruction:
        """The unit's answer: ``acknowledged`` (a person saw it), then ``done`` or ``refused``
        (with a reason); ``result`` is what the unit reports with it (kept with the instruction)."""
        if state not in UNIT_STATES:
            raise _bad(f"state must be one of {', '.join(UNIT_STATES)}", "bad_state")
        if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_TEXT):
            raise _bad(f"reason must be text of at most {MAX_TEXT} characters")
        if state == "refused" and not (reason or "").strip():
            raise _bad("a refusal needs a reason (the command room reads it)", "bad_reason")
        now = self._clock()

        def apply(conn: Any) -> Instruction:
            row = conn.execute(f"SELECT {COLUMNS} FROM instructions WHERE id=?", (instruction_id,)).fetchone()
            if row is None or row[1] != unit_id:
                raise NotFound(f"instruction {instruction_id!r} was never sent to unit {unit_id!r}",
                               code="unknown_instruction")
            ins = Instruction.from_row(row)
            if ins.state == state:
                raise Conflict(f"instruction {ins.id} is already {state}; nothing changed", code="already_in_state")
            if ins.state in ("queued", "expired", "cancelled"):
                raise Conflict(f"instruction {ins.id} was never delivered to this unit ({ins.state})",
                               code="not_delivered")
            if RANK[state] <= RANK[ins.state] or ins.state in ("done", "refused"):
                raise Conflict(f"instruction {ins.id} is {ins.state}; it cannot become {state}", code="bad_transition")
            self._transition(conn, ins, state, now, f"unit:{unit_id}", reason=reason, result=result)
            return self._get_in(conn, ins.id)

        ins = await self._db.write(apply)
        await self._changed(ins)
        return ins

    # housekeeping --------------------------------------------------------------------------
    def start(self, interval_s: float = 0.5) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(interval_s), name="instruction-sweeper")

    async def _loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.sweep()
            except Exception:
                logger.exception("instruction sweep failed")

    async def sweep(self) -> None:
        """Expire queued instructions past their TTL; alert on delivered ones nobody acknowledged in time."""
        now = self._clock()

        def expire(conn: Any) -> builtins.list[Instruction]:
            rows = conn.execute(f"SELECT {COLUMNS} FROM instructions WHERE state='queued' AND expires_at<=?",
                                (now,)).fetchall()
            out = []
            for row in rows:
                ins = Instruction.from_row(row)
                self._transition(conn, ins, "expired", now, "system", reason=EXPIRED_UNDELIVERED)
                out.append(self._get_in(conn, ins.id))
            return out

        for ins in await self._db.write(expire):
            await self._changed(ins)
        overdue = await self._db.run(
            self._db.query,
            f"SELECT {COLUMNS} FROM instructions WHERE state='delivered' AND overdue_alerted=0 "
            "AND delivered_at + ack_deadline_s <= ?", (now,),
        )
        for row in overdue:
            ins = Instruction.from_row(row)
            await self._db.run(self._db.query, "UPDATE instructions SET overdue_alerted=1 WHERE id=?", (ins.id,))
            await self._alerts.raise_alert(
                "ack_overdue", ins.unit_id,
                f"instruction {ins.id} ({ins.type}) delivered {now - (ins.delivered_at or now):.0f} s ago "
                "and not acknowledged by the officer",
                action_id=ins.action_id, case_number=ins.case_number, instruction_id=ins.id,
                params={"instruction_id": ins.id, "type": ins.type,
                        "seconds": round(now - (ins.delivered_at or now))},
            )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._receipts.close()

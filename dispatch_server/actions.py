"""Enforcement actions (执行行动): a case's field operation, its team, area and lifecycle.

planned → running → ended, or planned → cancelled (called off before it starts). While an action
runs, its units' instructions, alerts and talk are linked to it and its case number. A unit
belongs to at most one running action.

:class:`ActionStore` reads and writes the ``actions`` table; everything that only reads actions
(the running-action map, the archive, instructions, positions) takes the store.
:class:`ActionService` makes the changes and tells its listeners about each one, in order.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence, cast

from utctime import iso_seconds

from .audit import AuditTrail
from .auth import Person
from .errors import Conflict, NotFound
from .stores.accounts import Accounts
from .stores.database import Database

logger = logging.getLogger(__name__)

ACTION_TYPES = ("seizure", "search", "eviction", "service", "other")
STATES = ("planned", "running", "ended", "cancelled")
FIELDS = ("case_number", "title", "type", "address", "area", "planned_at", "units", "officers", "judge")


@dataclass(frozen=True)
class Action:
    id: str
    case_number: str
    title: str
    type: str
    address: str
    area: dict[str, Any] | None
    planned_at: float | None
    units: tuple[str, ...]
    officers: tuple[str, ...]
    judge: str
    state: str
    created_by: str
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    cancelled_at: float | None = None

    def view(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["units"], d["officers"] = list(self.units), list(self.officers)
        for k in ("planned_at", "created_at", "started_at", "ended_at", "cancelled_at"):
            d[k] = iso_seconds(d[k])
        return d

    def doc(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)

    @classmethod
    def from_doc(cls, doc: str) -> Action:
        d = json.loads(doc)
        d["units"], d["officers"] = tuple(d["units"]), tuple(d["officers"])
        return cls(**d)


@dataclass(frozen=True)
class ActionFields:
    """Validated fields of an action (parsed at the edge). ``given`` names the fields the request
    set: all of them for a new action, only those to change for an update."""

    case_number: str = ""
    title: str = ""
    type: str = "other"
    address: str = ""
    area: dict[str, Any] | None = None
    planned_at: float | None = None
    units: tuple[str, ...] = ()
    officers: tuple[str, ...] = ()
    judge: str = ""
    given: frozenset[str] = frozenset(FIELDS)

    def changes(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in FIELDS if k in self.given}


ActionListener = Callable[[Action], Awaitable[None]]


class ActionStore:
    """The ``actions`` table: one JSON document per action."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    def _load(self, action_id: str) -> Action | None:
        rows = self._db.query("SELECT doc FROM actions WHERE id=?", (action_id,))
        return Action.from_doc(rows[0][0]) if rows else None

    async def get(self, action_id: str) -> Action | None:
        return await self._db.run(self._load, action_id)

    async def require(self, action_id: str) -> Action:
        """The action, or ``404 unknown_action``."""
        action = await self.get(action_id)
        if action is None:
            raise NotFound(f"unknown action {action_id!r}", code="unknown_action")
        return action

    async def list(self, state: str | None = None) -> list[Action]:
        sql, args = "SELECT doc FROM actions", cast(tuple[Any, ...], ())
        if state is not None:
            sql, args = sql + " WHERE state=?", (state,)
        rows = await self._db.run(self._db.query, sql + " ORDER BY updated_at DESC", args)
        return [Action.from_doc(r[0]) for r in rows]

    async def running_for_unit(self, unit_id: str) -> Action | None:
        for action in await self.list("running"):
            if unit_id in action.units:
                return action
        return None

    async def save(self, action: Action, also: Callable[[sqlite3.Connection], None]) -> None:
        """Store ``action`` durably; ``also(connection)`` runs in the same transaction (its audit entry)."""
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO actions(id, doc, state, updated_at) VALUES (?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET doc=excluded.doc, state=excluded.state, updated_at=excluded.updated_at",
                (action.id, action.doc(), action.state, self._clock()),
            )
            also(conn)

        await self._db.write(write)


class ActionService:
    """Creates, edits, starts and ends actions; after each change every listener is awaited in
    the order given (the running-action map first, so the others already see the change)."""

    def __init__(self, store: ActionStore, accounts: Accounts, audit: AuditTrail,
                 listeners: Sequence[ActionListener], clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._accounts = accounts
        self._audit = audit
        self._listeners = tuple(listeners)
        self._clock = clock

    async def get(self, action_id: str) -> Action:
        return await self._store.require(action_id)

    async def list(self, state: str | None = None) -> list[Action]:
        return await self._store.list(state)

    async def _check_units(self, units: tuple[str, ...]) -> None:
        for unit_id in units:
            if await self._accounts.db.run(self._accounts.get_unit, unit_id) is None:
                raise NotFound(f"unknown unit {unit_id!r} in the team", code="unknown_unit")

    async def _check_free(self, units: tuple[str, ...], action_id: str) -> None:
        for other in await self._store.list("running"):
            busy = set(units) & set(other.units)
            if other.id != action_id and busy:
                raise Conflict(f"unit {sorted(busy)[0]} is already in running action {other.id} "
                               f"({other.case_number})", code="unit_busy")

    async def _commit(self, action: Action, person: Person, verb: str, **detail: Any) -> Action:
        await self._store.save(action, lambda c: self._audit.append_sync(
            c, person.username, verb, action.id, case_number=action.case_number, **detail))
        for listener in self._listeners:
            await listener(action)
        return action

    async def create(self, fields: ActionFields, person: Person) -> Action:
        await self._check_units(fields.units)
        action = Action(
            id=f"act-{secrets.token_hex(6)}", state="planned", created_by=person.username,
            created_at=self._clock(), **{k: getattr(fields, k) for k in FIELDS},
        )
        return await self._commit(action, person, "action.created", title=action.title)

    async def update(self, action_id: str, fields: ActionFields, person: Person) -> Action:
        changes = fields.changes()
        action = await self.get(action_id)
        if action.state in ("ended", "cancelled"):
            raise Conflict(f"action {action_id} is {action.state} and can no longer be edited", code="action_ended")
        if "units" in changes:
            await self._check_units(fields.units)
            if action.state == "running":
                await self._check_free(fields.units, action.id)
        return await self._commit(dataclasses.replace(action, **changes), person, "action.updated",
                                  fields=sorted(changes))

    async def start(self, action_id: str, person: Person) -> Action:
        action = await self.get(action_id)
        if action.state != "planned":
            raise Conflict(f"action {action_id} is {action.state}; only a planned action can start",
                           code="bad_transition")
        await self._check_free(action.units, action.id)
        started = dataclasses.replace(action, state="running", started_at=self._clock())
        return await self._commit(started, person, "action.started")

    async def end(self, action_id: str, person: Person) -> Action:
        action = await self.get(action_id)
        if action.state != "running":
            raise Conflict(f"action {action_id} is {action.state}; only a running action can end",
                           code="bad_transition")
        ended = dataclasses.replace(action, state="ended", ended_at=self._clock())
        return await self._commit(ended, person, "action.ended")

    async def cancel(self, action_id: str, person: Person) -> Action:
        """Call off a planned action (it never starts); 409 ``bad_transition`` once it runs."""
        action = await self.get(action_id)
        if action.state != "planned":
            raise Conflict(f"action {action_id} is {action.state}; only a planned action can be cancelled",
                           code="bad_transition")
        cancelled = dataclasses.replace(action, state="cancelled", cancelled_at=self._clock())
        return await self._commit(cancelled, person, "action.cancelled")

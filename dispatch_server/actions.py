"""Enforcement actions (执行行动): a case's field operation, its team, area and lifecycle.

planned → running → ended. While an action runs, its units' instructions, alerts and talk are
linked to it and its case number. A unit belongs to at most one running action.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from geo.fix import FixError, parse_time

from .audit import AuditTrail
from .auth import Person, check_unit_id
from .casenumber import CaseNumberError, parse_case_number
from .errors import BadRequest, Conflict, NotFound
from .roster import SharedCall, iso
from .store import Store

logger = logging.getLogger(__name__)

ACTION_TYPES = ("seizure", "search", "eviction", "service", "other")
STATES = ("planned", "running", "ended")
MAX_TEXT = 500
MAX_POLYGON_POINTS = 500

OnChange = Callable[["Action"], Awaitable[None]]


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

    def view(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["units"], d["officers"] = list(self.units), list(self.officers)
        for k in ("planned_at", "created_at", "started_at", "ended_at"):
            d[k] = iso(d[k])
        return d

    def doc(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)

    @classmethod
    def from_doc(cls, doc: str) -> "Action":
        d = json.loads(doc)
        d["units"], d["officers"] = tuple(d["units"]), tuple(d["officers"])
        return cls(**d)


def _bad(message: str, code: str = "bad_action") -> BadRequest:
    return BadRequest(message, code=code)


def _text(d: dict[str, Any], key: str, required: bool, max_len: int = MAX_TEXT) -> str:
    v = d.get(key, "")
    if not isinstance(v, str):
        raise _bad(f"{key} must be text")
    v = v.strip()
    if required and not v:
        raise _bad(f"{key} is required")
    if len(v) > max_len:
        raise _bad(f"{key} is longer than {max_len} characters")
    return v


def _coord(v: Any, lo: float, hi: float, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise _bad(f"area: {what} must be a number in {lo}..{hi}", "bad_area")
    return float(v)


def parse_area(v: Any) -> dict[str, Any] | None:
    """``{"type": "circle", lat, lon, radius_m}`` or ``{"type": "polygon", "points": [[lat, lon], ...]}``."""
    if v is None:
        return None
    if not isinstance(v, dict):
        raise _bad("area must be an object", "bad_area")
    kind = v.get("type")
    if kind == "circle":
        r = v.get("radius_m")
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 1 <= r <= 100_000:
            raise _bad("area: radius_m must be 1..100000 metres", "bad_area")
        return {"type": "circle", "lat": _coord(v.get("lat"), -90, 90, "lat"),
                "lon": _coord(v.get("lon"), -180, 180, "lon"), "radius_m": float(r)}
    if kind == "polygon":
        pts = v.get("points")
        if not isinstance(pts, list) or not 3 <= len(pts) <= MAX_POLYGON_POINTS:
            raise _bad(f"area: a polygon needs 3..{MAX_POLYGON_POINTS} points [lat, lon]", "bad_area")
        out = []
        for p in pts:
            if not isinstance(p, (list, tuple)) or len(p) != 2:
                raise _bad("area: each polygon point is [lat, lon]", "bad_area")
            out.append([_coord(p[0], -90, 90, "lat"), _coord(p[1], -180, 180, "lon")])
        return {"type": "polygon", "points": out}
    raise _bad("area.type must be 'circle' or 'polygon'", "bad_area")


def _names(d: dict[str, Any], key: str, unit_ids: bool = False) -> tuple[str, ...]:
    v = d.get(key, [])
    if not isinstance(v, list) or len(v) > 200 or not all(isinstance(x, str) and 0 < len(x) <= 64 for x in v):
        raise _bad(f"{key} must be a list of at most 200 names")
    if unit_ids:
        for x in v:
            check_unit_id(x)
    return tuple(dict.fromkeys(v))


def parse_fields(data: Any, partial: bool) -> dict[str, Any]:
    """Validated action fields from a JSON body; ``partial`` for PATCH (only the keys given)."""
    if not isinstance(data, dict):
        raise _bad("expected a JSON object")
    known = {"case_number", "title", "type", "address", "area", "planned_at", "units", "officers", "judge"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise _bad(f"unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")
    out: dict[str, Any] = {}

    def want(key: str) -> bool:
        return not partial or key in data

    if want("case_number"):
        try:
            out["case_number"] = str(parse_case_number(data.get("case_number")))
        except CaseNumberError as exc:
            raise _bad(str(exc), "bad_case_number") from None
    if want("title"):
        out["title"] = _text(data, "title", True)
    if want("type"):
        t = data.get("type", "other")
        if t not in ACTION_TYPES:
            raise _bad(f"type must be one of {', '.join(ACTION_TYPES)}")
        out["type"] = t
    if want("address"):
        out["address"] = _text(data, "address", False)
    if want("area"):
        out["area"] = parse_area(data.get("area"))
    if want("planned_at"):
        raw = data.get("planned_at")
        try:
            out["planned_at"] = None if raw is None else parse_time(raw)
        except FixError as exc:
            raise _bad(f"planned_at: {exc}") from None
    if want("units"):
        out["units"] = _names(data, "units", unit_ids=True)
    if want("officers"):
        out["officers"] = _names(data, "officers")
    if want("judge"):
        out["judge"] = _text(data, "judge", False, 64)
    return out


class ActionService:
    def __init__(self, store: Store, audit: AuditTrail, on_change: OnChange,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._audit = audit
        self._on_change = on_change
        self._clock = clock

    def _load(self, action_id: str) -> Action | None:
        rows = self._store.query("SELECT doc FROM actions WHERE id=?", (action_id,))
        return Action.from_doc(rows[0][0]) if rows else None

    async def get(self, action_id: str) -> Action:
        action = await self._store.run(self._load, action_id)
        if action is None:
            raise NotFound(f"unknown action {action_id!r}", code="unknown_action")
        return action

    async def list(self, state: str | None = None) -> list[Action]:
        sql, args = "SELECT doc FROM actions", ()
        if state is not None:
            sql, args = sql + " WHERE state=?", (state,)
        rows = await self._store.run(self._store.query, sql + " ORDER BY updated_at DESC", args)
        return [Action.from_doc(r[0]) for r in rows]

    async def running_for_unit(self, unit_id: str) -> Action | None:
        for action in await self.list("running"):
            if unit_id in action.units:
                return action
        return None

    async def _check_units(self, units: tuple[str, ...]) -> None:
        for unit_id in units:
            if await self._store.run(self._store.get_unit, unit_id) is None:
                raise NotFound(f"unknown unit {unit_id!r} in the team", code="unknown_unit")

    def _save(self, conn: Any, action: Action, actor: str, verb: str, **detail: Any) -> None:
        conn.execute(
            "INSERT INTO actions(id, doc, state, updated_at) VALUES (?,?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET doc=excluded.doc, state=excluded.state, updated_at=excluded.updated_at",
            (action.id, action.doc(), action.state, self._clock()),
        )
        self._audit.append_sync(conn, actor, verb, action.id, case_number=action.case_number, **detail)

    async def _commit(self, action: Action, person: Person, verb: str, **detail: Any) -> Action:
        await self._store.write(lambda c: self._save(c, action, person.username, verb, **detail))
        await self._on_change(action)
        return action

    async def create(self, data: Any, person: Person) -> Action:
        fields = parse_fields(data, partial=False)
        await self._check_units(fields["units"])
        action = Action(
            id=f"act-{secrets.token_hex(6)}", state="planned", created_by=person.username,
            created_at=self._clock(), **fields,
        )
        return await self._commit(action, person, "action.created", title=action.title)

    async def update(self, action_id: str, data: Any, person: Person) -> Action:
        fields = parse_fields(data, partial=True)
        action = await self.get(action_id)
        if action.state == "ended":
            raise Conflict(f"action {action_id} has ended and can no longer be edited", code="action_ended")
        if "units" in fields:
            await self._check_units(fields["units"])
            if action.state == "running":
                await self._check_free(fields["units"], action.id)
        return await self._commit(dataclasses.replace(action, **fields), person, "action.updated",
                                  fields=sorted(fields))

    async def _check_free(self, units: tuple[str, ...], action_id: str) -> None:
        for other in await self.list("running"):
            busy = set(units) & set(other.units)
            if other.id != action_id and busy:
                raise Conflict(f"unit {sorted(busy)[0]} is already in running action {other.id} "
                               f"({other.case_number})", code="unit_busy")

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


class RunningActions:
    """The running action ``(id, case number)`` of every unit in one, asked for with every fix.

    ``await running()`` answers from memory. After :meth:`invalidate` (this node changed an
    action) the next call reads the store and every caller waits for that one read, so nothing
    is linked to an action that has just ended or missed by one that has just started. When the
    map is merely older than ``ttl_s`` (an action changed on another node shows up that late),
    callers get it as it is while one background read refreshes it: thousands of fixes a second
    must not queue behind a store query, or each wait for a future of their own.
    """

    def __init__(self, actions: ActionService, ttl_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._actions = actions
        self._ttl_s = ttl_s
        self._clock = clock
        self._map: dict[str, tuple[str, str]] | None = None
        self._at = float("-inf")
        self._dirty = True
        self._read = SharedCall(self._load)
        self._refresh: asyncio.Task[dict[str, tuple[str, str]]] | None = None

    def invalidate(self) -> None:
        self._dirty = True

    async def __call__(self) -> dict[str, tuple[str, str]]:
        current = self._map
        if current is None or self._dirty:
            return await self._read()
        if self._clock() - self._at > self._ttl_s and (self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.get_running_loop().create_task(self._read(), name="running-actions-refresh")
            self._refresh.add_done_callback(_log_refresh_failure)
        return current

    async def _load(self) -> dict[str, tuple[str, str]]:
        was_dirty, self._dirty = self._dirty, False  # an invalidate() during the read marks it dirty again
        try:
            running = await self._actions.list("running")
        except BaseException:
            # A failed exact read is retried by the next caller; a failed background refresh
            # leaves the map in use until the next one.
            self._dirty = self._dirty or was_dirty
            raise
        self._map = {u: (a.id, a.case_number) for a in running for u in a.units}
        self._at = self._clock()
        return self._map

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            await asyncio.gather(self._refresh, return_exceptions=True)
            self._refresh = None


def _log_refresh_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("running actions not refreshed (the previous map stays in use): %r", task.exception())

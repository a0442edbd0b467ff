"""汇总统计: the figures a court is judged by, for a period in the court's time zone and a grouping.

A **period** is a day, a week (Monday to Sunday), a month or a custom range of whole days (both
ends included), each from 00:00 in the court's zone (``console.time_zone``) to 00:00 after its
last day. Which items belong to it:

- an action by its *reference time*: when it started; one that never started (planned or
  cancelled) by its planned time, or when it was created if it has none;
- an instruction, an alert and a footage request by when it was created; a gap by when it began;
- recorded time and the archive's growth by the part of each segment inside the period.

A **grouping** splits every figure: by action ``type``, ``judge``, ``officer`` (an action counts
for each of its officers), ``unit`` (each unit of its team; an instruction, alert or recording by
its own unit) or ``team`` (the sorted set of the action's units, joined with ``+``). An item that
belongs to no action (an instruction to a unit outside any action, say) is in the group ``""``.
``totals`` count everything once, so the groups of ``officer`` and ``unit`` may add up to more.

Coverage is :func:`dispatch_server.coverage.coverage` of each started action over its time
(until now while it runs) by its team's sealed segments, with the action type's
``min_recorders`` (:meth:`ProcedureConfig.rule_for`). Percentiles are nearest-rank: the value at
position ``ceil(p * n)`` of the sorted values. docs/supervision.md ("Statistics") says what each
figure means.
"""

from __future__ import annotations

import asyncio
import bisect
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any, Awaitable, Callable, Iterable, Protocol, Sequence
from zoneinfo import ZoneInfo

from recordings.catalog_stats import ArchiveGrowth, GapRow
from utctime import iso_seconds

from .actions import Action
from .config import ProcedureConfig
from .coverage import Coverage, coverage, merge
from .errors import BadRequest
from .stores import stats_queries as q
from .stores.database import Database

PERIOD_KINDS = ("day", "week", "month", "custom")
GROUPINGS = ("type", "judge", "officer", "unit", "team")
MAX_CUSTOM_DAYS = 400
# Drill-down: the figures whose actions can be listed (GET /api/stats/actions?figure=...).
FIGURES = ("planned", "started", "ended", "cancelled", "running", "undercovered", "gaps", "expired", "refused",
           "sos", "unacknowledged", "requests")
FULL = 1.0 - 1e-9  # a coverage ratio at least this is full coverage (float sums of interval lengths)


class RecordingFacts(Protocol):
    """What statistics read of the evidence catalog (:class:`recordings.catalog.Catalog`); blocking."""

    def recorded_between(self, since: float, until: float, table: str | None,
                         pairs: Sequence[tuple[str, str]] | None, by_unit: bool) -> dict[str, float]: ...

    def unit_spans_between(self, since: float, until: float) -> dict[str, list[tuple[float, float]]]: ...

    def gaps_between(self, since: float, until: float) -> list[GapRow]: ...

    def archive_growth(self, since: float, until: float) -> ArchiveGrowth: ...


@dataclass(frozen=True)
class Evidence:
    """The archive as statistics see it: its catalog, a way to bring the catalog up to the ledger
    first, and the last verification of the ledger (``{"at", "ok", "problems", "entries"}``)."""

    facts: RecordingFacts
    sync: Callable[[], Awaitable[None]]
    verification: Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Period:
    kind: str
    first: date
    last: date  # included
    zone: ZoneInfo

    @property
    def start(self) -> float:
        return datetime(self.first.year, self.first.month, self.first.day, tzinfo=self.zone).timestamp()

    @property
    def end(self) -> float:
        after = self.last + timedelta(days=1)
        return datetime(after.year, after.month, after.day, tzinfo=self.zone).timestamp()

    def contains(self, ts: float | None) -> bool:
        return ts is not None and self.start <= ts < self.end

    def view(self) -> dict[str, Any]:
        return {"kind": self.kind, "from": self.first.isoformat(), "to": self.last.isoformat(),
                "start": iso_seconds(self.start), "end": iso_seconds(self.end), "time_zone": self.zone.key}


def _date(value: str | None, name: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise BadRequest(f"{name} must be a date YYYY-MM-DD, not {value[:40]!r}", code="bad_period")


def make_period(kind: str, day: str | None, first: str | None, last: str | None, zone: ZoneInfo,
                now: float) -> Period:
    """The period ``kind`` around ``day`` (default: today in ``zone``), or ``first``..``last`` for
    ``custom``; ``400 bad_period`` naming the parameter that is wrong."""
    if kind not in PERIOD_KINDS:
        raise BadRequest(f"period must be one of {', '.join(PERIOD_KINDS)}, not {kind[:40]!r}", code="bad_period")
    if kind == "custom":
        a, b = _date(first, "from"), _date(last, "to")
        if a is None or b is None:
            raise BadRequest(f"period=custom needs {'from' if a is None else 'to'} (YYYY-MM-DD)", code="bad_period")
        if b < a:
            raise BadRequest("to must not be before from", code="bad_period")
        if (b - a).days >= MAX_CUSTOM_DAYS:
            raise BadRequest(f"from..to spans more than {MAX_CUSTOM_DAYS} days", code="bad_period")
        return Period(kind, a, b, zone)
    d = _date(day, "date") or datetime.fromtimestamp(now, zone).date()
    if kind == "day":
        return Period(kind, d, d, zone)
    if kind == "week":
        monday = d - timedelta(days=d.weekday())
        return Period(kind, monday, monday + timedelta(days=6), zone)
    first_day = d.replace(day=1)
    next_month = (first_day + timedelta(days=32)).replace(day=1)
    return Period(kind, first_day, next_month - timedelta(days=1), zone)


def check_group(group: str) -> str:
    if group not in GROUPINGS:
        raise BadRequest(f"group must be one of {', '.join(GROUPINGS)}, not {group[:40]!r}", code="bad_group")
    return group


def check_figure(figure: str) -> str:
    if figure not in FIGURES:
        raise BadRequest(f"figure must be one of {', '.join(FIGURES)}, not {figure[:40]!r}", code="bad_figure")
    return figure


def reference_time(action: Action) -> float:
    """When an action happened, for the period it belongs to (see the module docstring)."""
    if action.started_at is not None:
        return action.started_at
    return action.planned_at if action.planned_at is not None else action.created_at


def action_keys(action: Action, group: str) -> tuple[str, ...]:
    if group == "type":
        return (action.type,)
    if group == "judge":
        return (action.judge,)
    if group == "officer":
        return tuple(dict.fromkeys(action.officers)) or ("",)
    if group == "unit":
        return tuple(dict.fromkeys(action.units)) or ("",)
    return ("+".join(sorted(set(action.units))),)


def rounded(found: dict[str, Any] | None, points: Sequence[int] = (50, 90, 99)) -> dict[str, Any]:
    """Percentiles picked in SQL (:mod:`dispatch_server.stores.stats_queries`) in the shape of :func:`percentiles`."""
    found = found or {}
    out: dict[str, Any] = {"n": found.get("n", 0)}
    for p in (*(f"p{p}" for p in points), "max"):
        out[p] = round(found[p], 3) if found.get(p) is not None else None
    return out


def percentiles(values: Iterable[float], points: Sequence[int] = (50, 90, 99)) -> dict[str, Any]:
    """``{"n", "p50", ..., "max"}`` in seconds (nearest rank); None for each when there are no values."""
    v = sorted(values)
    out: dict[str, Any] = {"n": len(v)}
    for p in points:
        out[f"p{p}"] = round(v[-(-p * len(v) // 100) - 1], 3) if v else None
    out["max"] = round(v[-1], 3) if v else None
    return out


@dataclass
class _Group:
    """The figures of one group while they are counted."""

    planned: int = 0
    started: int = 0
    ended: int = 0
    cancelled: int = 0
    running: int = 0
    durations: list[float] = field(default_factory=list)
    recorded_s: float = 0.0
    coverages: list[Coverage] = field(default_factory=list)
    gaps: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    ins_types: Counter[str] = field(default_factory=Counter)
    ins_states: Counter[str] = field(default_factory=Counter)
    delivery: dict[str, Any] | None = None  # percentiles, from SQL
    ack: dict[str, Any] | None = None
    alert_kinds: Counter[str] = field(default_factory=Counter)
    sos_ack: dict[str, Any] | None = None
    unacknowledged: int = 0
    escalated: int = 0
    received: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    decision_s: list[float] = field(default_factory=list)
    exports: int = 0
    downloads: int = 0
    links_revoked: int = 0

    def view(self) -> dict[str, Any]:
        d = self.durations
        covered = sum(c.covered_s for c in self.coverages)
        spent = sum(c.total_s for c in self.coverages)
        return {
            "actions": {"planned": self.planned, "started": self.started, "ended": self.ended,
                        "cancelled": self.cancelled, "running": self.running,
                        "duration_s": {"total": round(sum(d), 3), "mean": round(sum(d) / len(d), 3) if d else None,
                                       **percentiles(d, (50,))}},
            "recording": {
                "recorded_s": round(self.recorded_s, 3), "recorded_hours": round(self.recorded_s / 3600, 3),
                "coverage": {"actions": len(self.coverages),
                             "full": sum(1 for c in self.coverages if c.ratio >= FULL),
                             "mean_ratio": round(sum(c.ratio for c in self.coverages) / len(self.coverages), 4)
                             if self.coverages else None,
                             "ratio": round(covered / spent, 4) if spent > 0 else None,
                             "covered_s": round(covered, 3), "action_s": round(spent, 3)},
                "gaps": {"count": sum(len(v) for v in self.gaps.values()),
                         "seconds": round(sum(sum(v) for v in self.gaps.values()), 3),
                         "by_cause": {k: {"count": len(v), "seconds": round(sum(v), 3)}
                                      for k, v in sorted(self.gaps.items())}}},
            "instructions": {"total": sum(self.ins_types.values()), "by_type": dict(sorted(self.ins_types.items())),
                             "by_state": dict(sorted(self.ins_states.items())),
                             "delivery_s": rounded(self.delivery), "ack_s": rounded(self.ack),
                             "expired": self.ins_states["expired"], "refused": self.ins_states["refused"]},
            "alerts": {"total": sum(self.alert_kinds.values()), "by_kind": dict(sorted(self.alert_kinds.items())),
                       "sos": self.alert_kinds["sos"], "sos_ack_s": rounded(self.sos_ack, (50, 90)),
                       "unacknowledged": self.unacknowledged, "escalated": self.escalated},
            "requests": {"received": self.received,
                         "decided": {k: self.outcomes[k] for k in ("approve", "refuse")},
                         "more_info": self.outcomes["more_info"], "decision_s": percentiles(self.decision_s, (50, 90)),
                         "exports": self.exports, "downloads": self.downloads, "links_revoked": self.links_revoked},
        }


@dataclass
class _Tally:
    """Groups by key plus the totals; ``add`` puts an item into its groups and the totals once."""

    groups: dict[str, _Group] = field(default_factory=lambda: defaultdict(_Group))
    totals: _Group = field(default_factory=_Group)

    def targets(self, keys: Iterable[str]) -> list[_Group]:
        return [self.groups[k] for k in dict.fromkeys(keys)] + [self.totals]

    def group(self, key: str) -> _Group:
        """A group by key; ``"*"`` is the totals."""
        return self.totals if key == "*" else self.groups[key]


@dataclass
class _Data:
    period: Period
    group: str
    actions: dict[str, Action]
    members: list[Action]  # the actions of the period
    coverage: dict[str, Coverage]
    gaps: list[GapRow]
    requests: list[dict[str, Any]]
    links: list[q.LinkRow]


def keyings(actions: Iterable[Action], group: str, load: bool) -> tuple[q.Keying, q.Keying]:
    """How instructions, alerts and recordings find their groups (their pairs when ``load``), and
    the totals' keying."""
    if group == "unit":
        return q.Keying(by_unit=True), q.Keying()
    pairs = tuple((a.id, k) for a in actions for k in action_keys(a, group)) if load else None
    return q.Keying(f"stats_keys_{group}", pairs), q.Keying()


class StatsService:
    """Computes statistics from the database, the evidence catalog (when the archive is on) and the
    procedure rules. Every query runs off the event loop."""

    def __init__(self, db: Database, procedure: ProcedureConfig, zone: ZoneInfo, evidence: Evidence | None,
                 clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._procedure = procedure
        self.zone = zone
        self._evidence = evidence
        self._clock = clock
        # The actions as last read, by the version of the actions table; and for which version each
        # grouping's temporary key tables (database, catalog) were filled.
        self._actions: tuple[tuple[Any, ...], dict[str, Action]] | None = None
        self._keys_of: dict[str, tuple[Any, ...]] = {}

    def period(self, kind: str, day: str | None, first: str | None, last: str | None) -> Period:
        return make_period(kind, day, first, last, self.zone, self._clock())

    async def _load(self, period: Period, group: str) -> _Data:
        now = self._clock()
        actions = await self._all_actions()
        members = sorted((a for a in actions.values() if period.contains(reference_time(a))),
                         key=lambda a: (reference_time(a), a.id))
        started = [a for a in members if a.started_at is not None]
        ev = self._evidence

        async def from_catalog() -> tuple[dict[str, list[tuple[float, float]]], list[GapRow]]:
            if ev is None:
                return {}, []
            await ev.sync()
            spans: dict[str, list[tuple[float, float]]] = {}
            if started:
                since = min(a.started_at or 0.0 for a in started)
                until = max((a.ended_at or now) for a in started)
                spans = await asyncio.to_thread(ev.facts.unit_spans_between, since, until)
            return spans, await asyncio.to_thread(ev.facts.gaps_between, period.start, period.end)

        async def from_db() -> tuple[list[dict[str, Any]], list[q.LinkRow]]:
            requests = await self._db.run(q.requests_between, self._db, period.start, period.end)
            return requests, await self._db.run(q.links_of, self._db, [r["id"] for r in requests])

        (spans, gaps), (requests, links) = await asyncio.gather(from_catalog(), from_db())
        return _Data(period, group, actions, members, self._coverage(started, spans, now), gaps, requests, links)

    async def _all_actions(self) -> dict[str, Action]:
        version = await self._db.run(q.actions_version, self._db)
        if self._actions is None or self._actions[0] != version:
            docs = await self._db.run(q.action_docs, self._db)
            self._actions = (version, {a.id: a for a in (Action.from_doc(d) for d in docs)})
        return self._actions[1]

    async def _counted(self, data: _Data, tally: _Tally) -> None:
        """Instructions, alerts and recorded time, counted in SQL by group and for the totals."""
        p, db = data.period, self._db
        version = self._actions[0] if self._actions is not None else ()
        load = self._keys_of.get(data.group) != version
        keys = keyings(data.actions.values(), data.group, load)
        ev = self._evidence

        async def from_db() -> list[q.Counted]:
            return [await db.run(db.read, partial(q.counted, p.start, p.end, k)) for k in keys]

        async def from_catalog() -> list[dict[str, float]]:  # at the same time, on another thread
            if ev is None:
                return []
            return [await asyncio.to_thread(ev.facts.recorded_between, p.start, p.end, k.table, k.pairs, k.by_unit)
                    for k in keys]

        counted, recorded = await asyncio.gather(from_db(), from_catalog())
        for found in counted:
            for key, typ, state, n in found.instructions:
                g = tally.group(key)
                g.ins_types[typ] += n
                g.ins_states[state] += n
            for key, pct in found.delivery.items():
                tally.group(key).delivery = pct
            for key, pct in found.ack.items():
                tally.group(key).ack = pct
            for key, kind, n, still_open, escalated in found.alerts:
                g = tally.group(key)
                g.alert_kinds[kind] += n
                g.unacknowledged += still_open
                g.escalated += escalated
            for key, pct in found.sos_ack.items():
                tally.group(key).sos_ack = pct
        for seconds_by_key in recorded:
            for key, seconds in seconds_by_key.items():
                tally.group(key).recorded_s += seconds
        self._keys_of[data.group] = version

    def _coverage(self, started: list[Action], spans: dict[str, list[tuple[float, float]]],
                  now: float) -> dict[str, Coverage]:
        merged = {u: merge(v) for u, v in spans.items()}
        starts = {u: [s for s, _ in v] for u, v in merged.items()}
        out = {}
        for a in started:
            assert a.started_at is not None
            begin, end = a.started_at, a.ended_at if a.ended_at is not None else max(now, a.started_at)
            team = {}
            for unit in set(a.units):
                i = max(0, bisect.bisect_right(starts.get(unit, []), begin) - 1)
                j = bisect.bisect_left(starts.get(unit, []), end)
                team[unit] = merged.get(unit, [])[i:j]
            out[a.id] = coverage(team, begin, end, self._procedure.rule_for(a.type).min_recorders)
        return out

    def _item_keys(self, data: _Data, action_id: str | None, unit_id: str | None) -> tuple[str, ...]:
        if data.group == "unit" and unit_id is not None:
            return (unit_id,)
        action = data.actions.get(action_id) if action_id else None
        return action_keys(action, data.group) if action is not None else ("",)

    def _tally(self, data: _Data) -> _Tally:
        tally = _Tally()
        for a in data.members:
            for g in tally.targets(action_keys(a, data.group)):
                g.planned += 1
                g.started += a.started_at is not None
                g.ended += a.state == "ended"
                g.cancelled += a.state == "cancelled"
                g.running += a.state == "running"
                if a.state == "ended" and a.started_at is not None and a.ended_at is not None:
                    g.durations.append(a.ended_at - a.started_at)
                if a.id in data.coverage:
                    g.coverages.append(data.coverage[a.id])
        for gap in data.gaps:
            for g in tally.targets(self._item_keys(data, gap.action_id, gap.unit_id)):
                g.gaps[gap.cause or "unknown"].append(max(0.0, gap.seconds))
        links: dict[str, list[q.LinkRow]] = defaultdict(list)
        for link in data.links:
            links[link.request_id].append(link)
        for r in data.requests:
            history = r.get("history") or []
            decision = next((h for h in history if h.get("what") in ("approve", "refuse")), None)
            asked = any(h.get("what") == "more_info" for h in history)
            exported = sum(1 for h in history if h.get("what") == "exported")
            for g in tally.targets(self._item_keys(data, r.get("action_id"), None)):
                g.received += 1
                if decision is not None:
                    g.outcomes[decision["what"]] += 1
                    g.decision_s.append(max(0.0, float(decision["at"]) - float(r["created_at"])))
                g.outcomes["more_info"] += asked
                g.exports += exported
                g.downloads += sum(link.uses for link in links[r["id"]])
                g.links_revoked += sum(1 for link in links[r["id"]] if link.revoked)
        return tally

    async def compute(self, period: Period, group: str) -> dict[str, Any]:
        """Every figure of ``period`` by ``group``: ``{"period", "group", "totals", "groups": [{"key", ...}],
        "evidence", "generated_at"}``; groups sorted by key."""
        data = await self._load(period, group)
        tally = self._tally(data)
        _, evidence = await asyncio.gather(self._counted(data, tally), self._evidence_view(period))
        return {"period": period.view(), "group": group, "court_name": self._procedure.court_name,
                "totals": tally.totals.view(),
                "groups": [{"key": k, **tally.groups[k].view()} for k in sorted(tally.groups)],
                "evidence": evidence, "generated_at": iso_seconds(self._clock())}

    async def _evidence_view(self, period: Period) -> dict[str, Any] | None:
        if self._evidence is None:
            return None
        growth = await asyncio.to_thread(self._evidence.facts.archive_growth, period.start, period.end)
        return {"archive_bytes": growth.bytes_now, "segments_sealed": growth.segments_sealed,
                "sealed_bytes": growth.bytes_sealed, "deleted_bytes": growth.bytes_deleted,
                "growth_bytes": growth.bytes_sealed - growth.bytes_deleted,
                "last_verification": await asyncio.to_thread(self._evidence.verification)}

    async def actions_behind(self, period: Period, group: str, figure: str, key: str | None) -> list[dict[str, Any]]:
        """The actions behind ``figure`` in the group ``key`` (every group when None), in time order."""
        data = await self._load(period, group)
        linked: set[str] = set()

        def link(action_id: str | None, unit_id: str | None) -> None:
            if action_id and (key is None or key in self._item_keys(data, action_id, unit_id)):
                linked.add(action_id)

        if figure == "gaps":
            for gap in data.gaps:
                link(gap.action_id, gap.unit_id)
        elif figure in ("expired", "refused"):
            for action_id, unit_id in await self._db.run(q.instruction_actions, self._db, period.start, period.end,
                                                         figure):
                link(action_id, unit_id)
        elif figure in ("sos", "unacknowledged"):
            for action_id, unit_id in await self._db.run(q.alert_actions, self._db, period.start, period.end,
                                                         figure == "sos"):
                link(action_id, unit_id)
        elif figure == "requests":
            for r in data.requests:
                link(r.get("action_id"), None)
        if figure in ("gaps", "expired", "refused", "sos", "unacknowledged", "requests"):
            chosen = sorted((data.actions[i] for i in linked if i in data.actions),
                            key=lambda a: (reference_time(a), a.id))
        else:
            test: dict[str, Callable[[Action], bool]] = {
                "planned": lambda a: True, "started": lambda a: a.started_at is not None,
                "ended": lambda a: a.state == "ended", "cancelled": lambda a: a.state == "cancelled",
                "running": lambda a: a.state == "running",
                "undercovered": lambda a: a.id in data.coverage and data.coverage[a.id].ratio < FULL,
            }
            chosen = [a for a in data.members if test[figure](a)
                      and (key is None or key in action_keys(a, group))]
        return [self._row(a, data.coverage.get(a.id)) for a in chosen]

    def _row(self, a: Action, cov: Coverage | None) -> dict[str, Any]:
        return {"id": a.id, "case_number": a.case_number, "title": a.title, "type": a.type, "state": a.state,
                "judge": a.judge, "units": list(a.units), "officers": list(a.officers),
                "planned_at": iso_seconds(a.planned_at), "started_at": iso_seconds(a.started_at),
                "ended_at": iso_seconds(a.ended_at), "cancelled_at": iso_seconds(a.cancelled_at),
                "coverage": round(cov.ratio, 4) if cov is not None else None,
                "required_recorders": self._procedure.rule_for(a.type).min_recorders,
                "report_url": f"/report/action?id={a.id}"}

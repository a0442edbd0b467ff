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
import logging
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any, Awaitable, Callable, Iterable, Protocol, Sequence
from zoneinfo import ZoneInfo

import numpy as np

from recordings import day_cache
from recordings.catalog_stats import CatalogDay, GapRow
from utctime import iso_seconds

from . import stats_groups
from .actions import Action
from .config import ProcedureConfig
from .coverage import Coverage, coverage, merge
from .errors import BadRequest
from .stores import stats_days
from .stores import stats_queries as q
from .stores.database import Database

PERIOD_KINDS = ("day", "week", "month", "custom")
GROUPINGS = ("type", "judge", "officer", "unit", "team")
logger = logging.getLogger(__name__)
MAX_CUSTOM_DAYS = 400
CHUNK_DAYS = 31  # day summaries read (or computed) per call, so that other queries get their turn between
# Drill-down: the figures whose actions can be listed (GET /api/stats/actions?figure=...).
FIGURES = ("planned", "started", "ended", "cancelled", "running", "undercovered", "gaps", "expired", "refused",
           "sos", "unacknowledged", "requests")
FULL = 1.0 - 1e-9  # a coverage ratio at least this is full coverage (float sums of interval lengths)


class RecordingFacts(Protocol):
    """What statistics read of the evidence catalog (:class:`recordings.catalog.Catalog`); blocking."""

    def stats_days(self, days: Sequence[tuple[float, float]], now: float) -> list[CatalogDay]: ...

    def warm_stats_days(self, days: Sequence[tuple[float, float]], now: float) -> int: ...

    def earliest_segment(self) -> float | None: ...

    def live_bytes(self) -> int: ...


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
        return midnight(self.first, self.zone)

    @property
    def end(self) -> float:
        return midnight(self.last + timedelta(days=1), self.zone)

    def days(self) -> list[tuple[float, float]]:
        """Each day of the period as ``[start, end)`` epoch seconds (midnight to midnight in its zone)."""
        return days_between(self.first, self.last, self.zone)

    def contains(self, ts: float | None) -> bool:
        return ts is not None and self.start <= ts < self.end

    def view(self) -> dict[str, Any]:
        return {"kind": self.kind, "from": self.first.isoformat(), "to": self.last.isoformat(),
                "start": iso_seconds(self.start), "end": iso_seconds(self.end), "time_zone": self.zone.key}


def midnight(d: date, zone: ZoneInfo) -> float:
    return datetime(d.year, d.month, d.day, tzinfo=zone).timestamp()


def days_between(first: date, last: date, zone: ZoneInfo) -> list[tuple[float, float]]:
    """Days ``first`` .. ``last`` (both included) as ``[start, end)`` epoch seconds in ``zone``."""
    out, d = [], first
    while d <= last:
        out.append((midnight(d, zone), midnight(d + timedelta(days=1), zone)))
        d += timedelta(days=1)
    return out


FIRST_DATE, LAST_DATE = date(1970, 1, 1), date(9998, 12, 31)  # a period's days and its end stay datetimes


def _date(value: str | None, name: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            d = date.fromisoformat(value)
            if not FIRST_DATE <= d <= LAST_DATE:
                raise BadRequest(f"{name} must be between {FIRST_DATE} and {LAST_DATE}, not {value}",
                                 code="bad_period")
            return d
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


def _chunks(days: list[tuple[float, float]]) -> list[list[tuple[float, float]]]:
    return [days[i:i + CHUNK_DAYS] for i in range(0, len(days), CHUNK_DAYS)]


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
    """Percentiles picked from the day summaries (:meth:`dispatch_server.stats_groups.Pile.percentiles`:
    ``n``, each point, ``max``, none missing) in the shape of :func:`percentiles`."""
    if not found:
        return {"n": 0, **{f"p{p}": None for p in points}, "max": None}
    return {k: v if k == "n" else round(v, 3) for k, v in found.items()}


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
    gaps: dict[str, list[float]] = field(default_factory=dict)  # by cause
    ins_types: dict[str, int] = field(default_factory=dict)
    ins_states: dict[str, int] = field(default_factory=dict)
    delivery: dict[str, Any] | None = None  # percentiles, from SQL
    ack: dict[str, Any] | None = None
    alert_kinds: dict[str, int] = field(default_factory=dict)
    sos_ack: dict[str, Any] | None = None
    unacknowledged: int = 0
    escalated: int = 0
    received: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    decision_s: list[float] = field(default_factory=list)
    exports: int = 0
    downloads: int = 0
    links_revoked: int = 0

    def view(self) -> dict[str, Any]:
        d = self.durations
        covered: float = 0  # (sums in the order of the actions; 0 when there are none, as sum() says)
        spent: float = 0
        ratios: float = 0
        full = 0
        for c in self.coverages:
            ratio = c.ratio
            covered += c.covered_s
            spent += c.total_s
            ratios += ratio
            full += ratio >= FULL
        gaps = self.gaps
        return {
            "actions": {"planned": self.planned, "started": self.started, "ended": self.ended,
                        "cancelled": self.cancelled, "running": self.running,
                        "duration_s": {"total": round(sum(d), 3), "mean": round(sum(d) / len(d), 3) if d else None,
                                       **percentiles(d, (50,))}},
            "recording": {
                "recorded_s": round(self.recorded_s, 3), "recorded_hours": round(self.recorded_s / 3600, 3),
                "coverage": {"actions": len(self.coverages), "full": full,
                             "mean_ratio": round(ratios / len(self.coverages), 4) if self.coverages else None,
                             "ratio": round(covered / spent, 4) if spent > 0 else None,
                             "covered_s": round(covered, 3), "action_s": round(spent, 3)},
                "gaps": {"count": sum(len(v) for v in gaps.values()),
                         "seconds": round(sum(sum(v) for v in gaps.values()), 3),
                         "by_cause": {k: {"count": len(v), "seconds": round(sum(v), 3)}
                                      for k, v in sorted(gaps.items())}}
                if gaps else {"count": 0, "seconds": 0, "by_cause": {}}},
            "instructions": {"total": sum(self.ins_types.values()), "by_type": dict(sorted(self.ins_types.items())),
                             "by_state": dict(sorted(self.ins_states.items())),
                             "delivery_s": rounded(self.delivery), "ack_s": rounded(self.ack),
                             "expired": self.ins_states.get("expired", 0),
                             "refused": self.ins_states.get("refused", 0)},
            "alerts": {"total": sum(self.alert_kinds.values()), "by_kind": dict(sorted(self.alert_kinds.items())),
                       "sos": self.alert_kinds.get("sos", 0), "sos_ack_s": rounded(self.sos_ack, (50, 90)),
                       "unacknowledged": self.unacknowledged, "escalated": self.escalated},
            "requests": {"received": self.received,
                         "decided": {k: self.outcomes.get(k, 0) for k in ("approve", "refuse")},
                         "more_info": self.outcomes.get("more_info", 0),
                         "decision_s": percentiles(self.decision_s, (50, 90)),
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
    recorded: list[CatalogDay]  # the catalog's summary of each day of the period
    gaps: list[GapRow]
    requests: list[dict[str, Any]]
    links: list[q.LinkRow]


class StatsService:
    """Computes statistics from the database, the evidence catalog (when the archive is on) and the
    procedure rules. Every query runs off the event loop; instructions, alerts and recordings are
    read as day summaries (:mod:`dispatch_server.stores.stats_days`, :mod:`recordings.catalog_stats`),
    kept between requests and redone only for the days whose items changed."""

    def __init__(self, db: Database, procedure: ProcedureConfig, zone: ZoneInfo, evidence: Evidence | None,
                 clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._procedure = procedure
        self.zone = zone
        self._evidence = evidence
        self._clock = clock
        # The actions as last read, by the version of the actions table; and, for that version, the
        # groups of each grouping, and each started action's coverage with what it was computed from.
        self._actions: tuple[tuple[Any, ...], dict[str, Action]] | None = None
        self._groups: dict[str, stats_groups.Groups] = {}
        self._coverages: dict[str, tuple[Any, Coverage]] = {}
        self._decoded = day_cache.Decoded(stats_days.DaySummary.read)
        self._warming: asyncio.Task[None] | None = None

    def period(self, kind: str, day: str | None, first: str | None, last: str | None) -> Period:
        return make_period(kind, day, first, last, self.zone, self._clock())

    async def start(self) -> None:
        """Sum up, in the background, the days a request may ask for that are not summed up yet (after
        an upgrade, or a night's changes), so that the first request for a long period is fast too."""
        self._warming = asyncio.get_running_loop().create_task(self._warm(), name="stats-warm-up")

    async def close(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
            await asyncio.gather(self._warming, return_exceptions=True)
            self._warming = None

    async def _warm(self) -> None:
        try:
            await self._warm_all()
        except Exception:  # the requests compute what is missing: slower, still right
            logger.exception("statistics: summing up past days in the background failed")

    async def _warm_all(self) -> None:
        t0, now = time.monotonic(), self._clock()
        await self._all_actions()
        today = datetime.fromtimestamp(now, self.zone).date()
        earliest = await self._db.run(self._db.read, stats_days.earliest)
        counted = await self._warm_days(earliest, today, now, lambda chunk: self._db.run(
            self._db.read, partial(stats_days.warm, spans=chunk, now=now, decoded=self._decoded)))
        ev = self._evidence
        if ev is not None:
            oldest = await asyncio.to_thread(ev.facts.earliest_segment)
            earliest = oldest if earliest is None or (oldest is not None and oldest < earliest) else earliest
            counted += await self._warm_days(oldest, today, now, lambda chunk: asyncio.to_thread(
                ev.facts.warm_stats_days, chunk, now))
        if earliest is not None:  # (said even when all were current: benchmarks wait for it)
            logger.info("statistics: %d day summaries computed in %.1f s", counted, time.monotonic() - t0)

    async def _warm_days(self, earliest: float | None, today: date, now: float,
                         warm: Callable[[list[tuple[float, float]]], Awaitable[int]]) -> int:
        if earliest is None:
            return 0
        first = max(datetime.fromtimestamp(earliest, self.zone).date(), today - timedelta(days=MAX_CUSTOM_DAYS))
        counted = 0
        for chunk in _chunks(days_between(first, today - timedelta(days=1), self.zone)):
            counted += await warm(chunk)
        return counted

    async def _load(self, period: Period, group: str) -> _Data:
        now = self._clock()
        actions = await self._all_actions()
        members = sorted((a for a in actions.values() if period.contains(reference_time(a))),
                         key=lambda a: (reference_time(a), a.id))
        started = [a for a in members if a.started_at is not None]
        ev = self._evidence

        async def from_catalog() -> dict[float, CatalogDay]:
            if ev is None:
                return {}
            await ev.sync()
            first, last = period.first, period.last
            if started:  # the actions' own days too: one may run on past the period
                first = min(first, datetime.fromtimestamp(min(a.started_at or 0.0 for a in started), self.zone).date())
                until = max((a.ended_at or now) for a in started)
                last = max(last, datetime.fromtimestamp(until, self.zone).date())
            spans = days_between(first, last, self.zone)
            found = [d for chunk in _chunks(spans) for d in await asyncio.to_thread(ev.facts.stats_days, chunk, now)]
            by_start = {s: d for (s, _), d in zip(spans, found, strict=True)}
            return by_start

        async def from_db() -> tuple[list[dict[str, Any]], list[q.LinkRow]]:
            requests = await self._db.run(q.requests_between, self._db, period.start, period.end)
            return requests, await self._db.run(q.links_of, self._db, [r["id"] for r in requests])

        days, (requests, links) = await asyncio.gather(from_catalog(), from_db())
        recorded = [days[s] for s, _ in period.days() if s in days]
        gaps = [gap for d in recorded for gap in d.gaps]
        covered = await asyncio.to_thread(self._coverage, started, days, now)  # CPU: off the event loop
        return _Data(period, group, actions, members, covered, recorded, gaps, requests, links)

    async def _all_actions(self) -> dict[str, Action]:
        version = await self._db.run(q.actions_version, self._db)
        if self._actions is None or self._actions[0] != version:
            docs = await self._db.run(q.action_docs, self._db)
            parsed = await asyncio.to_thread(lambda: {a.id: a for a in map(Action.from_doc, docs)})
            self._actions = (version, parsed)
            self._groups.clear()
        return self._actions[1]

    def _grouping(self, data: _Data) -> stats_groups.Groups:
        """The groups of ``data``'s grouping; a cell (an action id and a unit id, ``""`` for none) is
        in its unit's group (``unit``) or in its action's groups."""
        found = self._groups.get(data.group)
        if found is not None:
            return found
        actions, group = data.actions, data.group

        def keys(action_id: str, unit_id: str) -> tuple[str, ...]:
            if group == "unit":
                return (unit_id,)
            action = actions.get(action_id) if action_id else None
            return action_keys(action, group) if action is not None else ("",)
        found = self._groups[group] = stats_groups.Groups(keys)
        return found

    async def _days(self, period: Period) -> list[stats_days.DaySummary]:
        """The database's summary of each day of ``period``."""
        now = self._clock()
        return [d for chunk in _chunks(period.days()) for d in await self._db.run(
            self._db.read, partial(stats_days.days, spans=chunk, now=now, decoded=self._decoded))]

    def _counted(self, data: _Data, days: list[stats_days.DaySummary], tally: _Tally) -> None:
        """Instructions, alerts and recorded time of the period's days, added up by group and for
        the totals (CPU: run off the event loop)."""
        groups = self._grouping(data)
        found = stats_groups.Counted(groups)
        for day in days:
            found.add(day)
        found.finish()
        names = found.groups.names
        codes, per_group, totals = found.instructions.sums(names)
        types = sorted({c[0] for c in codes})
        states = sorted({c[1] for c in codes})
        to_type = np.zeros((len(codes), len(types)))
        to_state = np.zeros((len(codes), len(states)))
        for i, (typ, state) in enumerate(codes):
            to_type[i, types.index(typ)] = 1
            to_state[i, states.index(state)] = 1
        counts = np.vstack([per_group[:, :, 0], totals[None, :, 0]])
        keys = [*names, stats_groups.TOTALS]
        by_type, by_state = (counts @ to_type).astype(np.int64).tolist(), (counts @ to_state).astype(np.int64).tolist()
        for i in np.nonzero(counts.any(axis=1))[0].tolist():
            g = tally.group(keys[i])
            g.ins_types = {t: n for t, n in zip(types, by_type[i], strict=True) if n}
            g.ins_states = {s: n for s, n in zip(states, by_state[i], strict=True) if n}
        for key, pct in found.delivery.percentiles(names, q.POINTS).items():
            tally.group(key).delivery = pct
        for key, pct in found.ack.percentiles(names, q.POINTS).items():
            tally.group(key).ack = pct
        kinds, per_group, totals = found.alerts.sums(names)
        counts = np.concatenate([per_group, totals[None]]).astype(np.int64)
        by_kind = counts[:, :, 0].tolist()
        still_open, escalated = counts[:, :, 1].sum(axis=1), counts[:, :, 2].sum(axis=1)
        for i in np.nonzero(counts[:, :, 0].any(axis=1))[0].tolist():
            g = tally.group(keys[i])
            g.alert_kinds = {k: n for (k,), n in zip(kinds, by_kind[i], strict=True) if n}
            g.unacknowledged = int(still_open[i])
            g.escalated = int(escalated[i])
        for key, pct in found.sos.percentiles(names, (50, 90)).items():
            tally.group(key).sos_ack = pct
        recorded = [(d.cells, d.seconds, None if d.stamp is None else ("catalog", d.start, d.stamp))
                    for d in data.recorded]
        for key, seconds in stats_groups.recorded(recorded, groups).items():
            tally.group(key).recorded_s += seconds

    def _coverage(self, started: list[Action], days: dict[float, CatalogDay], now: float) -> dict[str, Coverage]:
        starts = sorted(days)
        out = {}
        for a in started:
            assert a.started_at is not None
            begin, end = a.started_at, a.ended_at if a.ended_at is not None else max(now, a.started_at)
            touched = [days[s] for s in starts[max(0, bisect.bisect_right(starts, begin) - 1):
                                               bisect.bisect_left(starts, end)]]
            required = self._procedure.rule_for(a.type).min_recorders
            made_of = (begin, end, tuple(sorted(set(a.units))), required, tuple((d.start, d.stamp) for d in touched))
            kept = self._coverages.get(a.id)
            if kept is not None and kept[0] == made_of:
                out[a.id] = kept[1]
                continue
            team = {}
            for unit in set(a.units):
                pieces = [d.spans[unit] for d in touched if unit in d.spans]
                team[unit] = merge(map(tuple, np.concatenate(pieces).tolist())) if pieces else []
            out[a.id] = coverage(team, begin, end, required)
            if all(d.stamp is not None for d in touched):
                self._coverages[a.id] = (made_of, out[a.id])
        return out

    def _item_keys(self, data: _Data, action_id: str | None, unit_id: str | None) -> tuple[str, ...]:
        if data.group == "unit" and unit_id is not None:
            return (unit_id,)
        action = data.actions.get(action_id) if action_id else None
        return action_keys(action, data.group) if action is not None else ("",)

    def _tally(self, data: _Data) -> _Tally:
        tally = _Tally()
        known: dict[tuple[str | None, str | None], list[_Group]] = {}

        def targets(action_id: str | None, unit_id: str | None) -> list[_Group]:
            found = known.get((action_id, unit_id))
            if found is None:
                found = known[action_id, unit_id] = tally.targets(self._item_keys(data, action_id, unit_id))
            return found

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
            for g in targets(gap.action_id, gap.unit_id):
                g.gaps.setdefault(gap.cause or "unknown", []).append(max(0.0, gap.seconds))
        links: dict[str, list[q.LinkRow]] = defaultdict(list)
        for link in data.links:
            links[link.request_id].append(link)
        for r in data.requests:
            history = r.get("history") or []
            decision = next((h for h in history if h.get("what") in ("approve", "refuse")), None)
            asked = any(h.get("what") == "more_info" for h in history)
            exported = sum(1 for h in history if h.get("what") == "exported")
            for g in targets(r.get("action_id"), None):
                g.received += 1
                if decision is not None:
                    g.outcomes[decision["what"]] = g.outcomes.get(decision["what"], 0) + 1
                    g.decision_s.append(max(0.0, float(decision["at"]) - float(r["created_at"])))
                g.outcomes["more_info"] = g.outcomes.get("more_info", 0) + asked
                g.exports += exported
                g.downloads += sum(link.uses for link in links[r["id"]])
                g.links_revoked += sum(1 for link in links[r["id"]] if link.revoked)
        return tally

    async def compute(self, period: Period, group: str) -> dict[str, Any]:
        """Every figure of ``period`` by ``group``: ``{"period", "group", "totals", "groups": [{"key", ...}],
        "evidence", "generated_at"}``; groups sorted by key."""
        data = await self._load(period, group)
        days, evidence = await asyncio.gather(self._days(period), self._evidence_view(data))

        def figures() -> dict[str, Any]:  # a year is ~0.5 s of CPU: not on the event loop
            tally = self._tally(data)
            self._counted(data, days, tally)
            return {"period": period.view(), "group": group, "court_name": self._procedure.court_name,
                    "totals": tally.totals.view(),
                    "groups": [{"key": k, **tally.groups[k].view()} for k in sorted(tally.groups)],
                    "evidence": evidence, "generated_at": iso_seconds(self._clock())}
        return await asyncio.to_thread(figures)

    async def _evidence_view(self, data: _Data) -> dict[str, Any] | None:
        if self._evidence is None:
            return None
        bytes_now = await asyncio.to_thread(self._evidence.facts.live_bytes)
        sealed = sum(d.bytes_sealed for d in data.recorded)
        deleted = sum(d.bytes_deleted for d in data.recorded)
        return {"archive_bytes": bytes_now, "segments_sealed": sum(d.segments_sealed for d in data.recorded),
                "sealed_bytes": sealed, "deleted_bytes": deleted, "growth_bytes": sealed - deleted,
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

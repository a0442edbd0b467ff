"""行动报告: the one-page report of an enforcement action, for the court's file and its supervisors.

For an ended action (and, marked ``provisional``, for one still running: its figures run up to
now) the report gathers what the server knows of it: the team, its times in the court's time
zone, the units' GPS tracks during the action, what each unit recorded and the coverage by the
number of recorders its type requires (``settings.procedure``; :mod:`dispatch_server.coverage`),
the gaps with their causes, the rule breaks, the instructions with their answers, the alerts, and
the evidence list: every recording with its sealed segments' SHA-256 and ledger indexes.

Everything is read from where it is kept (the actions and instructions tables, the alerts, the
track store, the evidence catalog); nothing is stored. A planned action has no report yet
(``409 action_not_started``). The edge writes each read to the evidence ledger (it lists the
evidence); this module only assembles.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any, Callable, Mapping, Protocol, Sequence
from zoneinfo import ZoneInfo

from geo.track import TrackStore
from utctime import iso_millis, iso_seconds, parse_iso

from .actions import Action, ActionStore
from .alerts import AlertService
from .config import ProcedureConfig
from .coverage import coverage
from .errors import Conflict
from .export_sources import recorded_intervals
from .instructions import InstructionService
from .procedure_breaks import ProcedureBreak, ProcedureBreakStore, describe
from .stores.accounts import Accounts

MAX_TRACK_FIXES = 50_000  # fixes read per unit (a day at one a second is 86,400: the action is shorter)
MAP_POINTS = 1500  # per unit on the map: a printed page shows no more
MAX_ROWS = 1000  # instructions and alerts per report (the report says when there were more)


class ActionRecordings(Protocol):
    """What the report reads of the evidence catalog (:class:`dispatch_server.export_sources.ExportSources`)."""

    async def recordings_of_action(self, action_id: str) -> list[dict[str, Any]]: ...


def thin(points: Sequence[tuple[float, float, float]], most: int) -> list[tuple[float, float, float]]:
    """At most ``most`` of the points, evenly spread, always with the first and the last."""
    if len(points) <= most:
        return list(points)
    step = (len(points) - 1) / (most - 1)
    return [points[round(i * step)] for i in range(most)]


class ActionReports:
    """Assembles reports. ``recordings`` is None when the evidence archive is disabled."""

    def __init__(self, actions: ActionStore, accounts: Accounts, instructions: InstructionService,
                 alerts: AlertService, tracks: TrackStore, recordings: ActionRecordings | None,
                 breaks: ProcedureBreakStore, procedure: ProcedureConfig, time_zone: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._actions = actions
        self._accounts = accounts
        self._instructions = instructions
        self._alerts = alerts
        self._tracks = tracks
        self._recordings = recordings
        self._breaks = breaks
        self._procedure = procedure
        self._zone = ZoneInfo(time_zone)
        self._time_zone = time_zone
        self._clock = clock

    def _local(self, ts: float | None) -> str | None:
        """``2026-12-02 16:05:09`` in the court's zone (what a printed page and a CSV show)."""
        return None if ts is None else datetime.fromtimestamp(ts, self._zone).strftime("%Y-%m-%d %H:%M:%S")

    async def exists(self, action_id: str) -> bool:
        return await self._actions.get(action_id) is not None

    async def report(self, action_id: str) -> dict[str, Any]:
        """The report of the action (404 ``unknown_action``; 409 ``action_not_started`` while planned)."""
        action = await self._actions.require(action_id)
        if action.started_at is None:
            raise Conflict(f"action {action_id} has not started: a report covers an action once it runs",
                           code="action_not_started")
        now = self._clock()
        start = action.started_at
        end = action.ended_at if action.ended_at is not None else max(start, now)
        recordings = await self._recordings.recordings_of_action(action.id) if self._recordings else []
        instructions = await self._instructions.list(action=action.id, limit=MAX_ROWS)
        alerts = await self._alerts.for_action(action.id, MAX_ROWS)
        breaks = await self._breaks.for_action(action.id)
        notice = await self._breaks.notice(action.id)
        rule = self._procedure.rule_for(action.type)
        by_unit = {u: recorded_intervals([r for r in recordings if r["unit_id"] == u])
                   for u in dict.fromkeys([*action.units, *(r["unit_id"] for r in recordings if r["unit_id"])])}
        cover = coverage({u: [(parse_iso(s), parse_iso(e)) for s, e in iv] for u, iv in by_unit.items()},
                         start, end, rule.min_recorders)
        return {
            "court_name": self._procedure.court_name,
            "time_zone": self._time_zone,
            "generated_at": iso_seconds(now),
            "generated_local": self._local(now),
            "provisional": action.state != "ended",
            "action": action.view(),
            "team": await self._team(action),
            "times": self._times(action, end),
            "rule": {"type": rule.type, "min_recorders": rule.min_recorders,
                     "record_before_start": rule.record_before_start, "stay_in_area": rule.stay_in_area,
                     "notice_within_s": rule.notice_within_s},
            "coverage": {
                "start": iso_millis(cover.start), "end": iso_millis(cover.end),
                "required": cover.required, "ratio": round(cover.ratio, 4), "covered_s": round(cover.covered_s, 3),
                "total_s": round(cover.total_s, 3),
                "shortfalls": [{"start": iso_millis(s.start), "end": iso_millis(s.end), "seconds": round(s.seconds, 3),
                                "running": s.running, "local_start": self._local(s.start),
                                "local_end": self._local(s.end)} for s in cover.shortfalls],
            },
            "timeline": [self._unit_timeline(u, iv, recordings) for u, iv in by_unit.items()],
            "gaps": self._gaps(recordings),
            "rule_breaks": [self._break(b, end) for b in breaks],
            "notice": None if notice is None else {
                **notice.view(), "local": self._local(notice.notice_at),
                "after_start_s": round(notice.notice_at - start, 3),
                "in_time": notice.notice_at - start <= rule.notice_within_s if rule.notice_within_s else None},
            "tracks": await self._unit_tracks(list(by_unit), start, end),
            "instructions": [self._instruction(i.view()) for i in reversed(instructions)],
            "instructions_truncated": len(instructions) >= MAX_ROWS,
            "alerts": [self._alert(a) for a in alerts],
            "alerts_truncated": len(alerts) >= MAX_ROWS,
            "evidence": self._evidence(recordings),
        }

    async def _team(self, action: Action) -> dict[str, Any]:
        units = []
        for unit_id in action.units:
            rec = await self._accounts.db.run(self._accounts.get_unit, unit_id)
            units.append({"id": unit_id, "kind": rec.kind if rec else None, "name": rec.name if rec else ""})
        return {"units": units, "officers": list(action.officers), "judge": action.judge,
                "created_by": action.created_by}

    def _times(self, action: Action, end: float) -> dict[str, Any]:
        started = action.started_at or end
        return {
            "planned_at": iso_seconds(action.planned_at), "started_at": iso_seconds(action.started_at),
            "ended_at": iso_seconds(action.ended_at), "until": iso_seconds(end),
            "duration_s": round(end - started, 3),
            "local": {"planned_at": self._local(action.planned_at), "started_at": self._local(action.started_at),
                      "ended_at": self._local(action.ended_at), "until": self._local(end)},
        }

    def _break(self, brk: ProcedureBreak, end: float) -> dict[str, Any]:
        """A rule break with its line of the completeness statement; one still open runs to the
        report's end (``open`` says so)."""
        zh, en = describe(brk, self._zone)
        return {**brk.view(), "open": brk.open, "statement": zh, "statement_en": en,
                "seconds": round((brk.ended_at if brk.ended_at is not None else end) - brk.started_at, 3),
                "local_start": self._local(brk.started_at), "local_end": self._local(brk.ended_at)}

    @staticmethod
    def _unit_timeline(unit_id: str, intervals: list[list[str]], recordings: list[dict[str, Any]]) -> dict[str, Any]:
        mine = [r for r in recordings if r["unit_id"] == unit_id]
        return {"unit_id": unit_id, "recorded": intervals,
                "gaps": [{"start": g["start"], "end": g["end"], "cause": g["cause"]} for r in mine for g in r["gaps"]],
                "recordings": [r["recording_id"] for r in mine]}

    @staticmethod
    def _gaps(recordings: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for r in recordings:
            for g in r["gaps"]:
                seconds = (parse_iso(g["end"]) - parse_iso(g["start"])) if g["start"] and g["end"] else None
                out.append({"unit_id": r["unit_id"], "recording_id": r["recording_id"], "start": g["start"],
                            "end": g["end"], "seconds": None if seconds is None else round(seconds, 3),
                            "cause": g["cause"]})
        return sorted(out, key=lambda g: str(g["start"]))

    async def _unit_tracks(self, units: list[str], start: float, end: float) -> list[dict[str, Any]]:
        def read(unit_id: str) -> list[tuple[float, float, float]]:
            return [(p.fix.ts, p.fix.lat, p.fix.lon) for p in self._tracks.query(unit_id, start, end, MAX_TRACK_FIXES)]

        out = []
        for unit_id in units:
            points = await asyncio.to_thread(read, unit_id)
            shown = thin(points, MAP_POINTS)
            out.append({"unit_id": unit_id, "fixes": len(points),
                        "first": iso_seconds(points[0][0]) if points else None,
                        "last": iso_seconds(points[-1][0]) if points else None,
                        "points": [[round(lat, 6), round(lon, 6)] for _, lat, lon in shown]})
        return out

    @staticmethod
    def _instruction(ins: Mapping[str, Any]) -> dict[str, Any]:
        keys = ("id", "unit_id", "seq", "type", "payload", "priority", "state", "created_by", "created_at",
                "expires_at", "delivered_at", "acknowledged_at", "done_at", "refused_at", "expired_at", "cancelled_at",
                "reason", "result")
        return {k: ins.get(k) for k in keys}

    @staticmethod
    def _alert(alert: Mapping[str, Any]) -> dict[str, Any]:
        keys = ("id", "kind", "code", "params", "unit_id", "message", "state", "escalated", "escalated_at",
                "created_at", "acknowledged_by", "acknowledged_at", "instruction_id")
        return {k: alert.get(k) for k in keys}

    def _evidence(self, recordings: list[dict[str, Any]]) -> dict[str, Any]:
        recs = [{"recording_id": r["recording_id"], "unit_id": r["unit_id"], "opened": r["opened"],
                 "closed": r["closed"], "end_cause": r["end_cause"], "opened_index": r.get("opened_index"),
                 "closed_index": r.get("closed_index"), "deleted_segments": r["deleted_segments"],
                 "segments": [{"seq": s["seq"], "sha256": s["sha256"], "bytes": s["bytes"], "start": s["start"],
                               "end": s["end"], "ledger_index": s["ledger_index"]} for s in r["segments"]]}
                for r in recordings]
        return {"archive": self._recordings is not None, "recordings": recs,
                "segments": sum(len(r["segments"]) for r in recs),
                "bytes": sum(s["bytes"] or 0 for r in recs for s in r["segments"])}

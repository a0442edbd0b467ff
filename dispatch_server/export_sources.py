"""What the evidence archive holds of an enforcement action, for footage requests and exports:
its recordings with their segments and gaps, and the completeness statement of the action.

Answered from the catalog (:meth:`recordings.catalog.Catalog.action_recordings`, a projection of
the ledger kept in step with it), never by reading the ledger again: a request's detail, a
decision, a review frame and an export each cost a few indexed queries, however large the
archive.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Iterable, Mapping
from zoneinfo import ZoneInfo

from utctime import iso_millis, parse_iso

from .actions import Action
from .evidence_catalog import EvidenceCatalog
from .procedure_breaks import ProcedureBreakStore, describe

CONTIGUOUS_S = 1.5  # segments closer than this make one recorded interval

# How a recording's end reads in a completeness statement, by its end cause.
END_STATEMENTS = {
    "server_stopped": "recording ended: the server was stopped for a planned restart (server_stopped)",
    "server_shutdown": "recording ended: the server was stopped for a planned restart (server_stopped)",
    "link_lost": "recording ended: the unit's link was lost and it did not come back (link_lost)",
    "unit_stopped": "recording ended: the unit stopped sending (unit_stopped)",
    "access_revoked": "recording ended: the unit's access was revoked (access_revoked)",
    "worker_restarted": "recording ended: the server's media worker died and the unit did not come back "
                        "(worker_restarted)",
}


def recorded_intervals(recordings: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    """What the recordings' sealed segments cover, as ``[start, end]`` ISO times in time order;
    segments less than ``CONTIGUOUS_S`` apart make one interval (the completeness statement and
    the per-action report's coverage read the same intervals)."""
    intervals: list[list[str]] = []
    segments = [s for r in recordings for s in r["segments"] if s["start"] is not None and s["end"] is not None]
    for s in sorted(segments, key=lambda s: str(s["start"])):
        if intervals and parse_iso(s["start"]) - parse_iso(intervals[-1][1]) <= CONTIGUOUS_S:
            intervals[-1][1] = max(intervals[-1][1], s["end"])
        else:
            intervals.append([s["start"], s["end"]])
    return intervals


class ExportSources:
    def __init__(self, evidence: EvidenceCatalog, clock: Callable[[], float] = time.time,
                 breaks: ProcedureBreakStore | None = None, zone: ZoneInfo | None = None) -> None:
        self._evidence = evidence
        self._clock = clock
        self._breaks = breaks  # rule breaks of the rules of procedure (流程预警), stated with their times
        self._zone = zone or ZoneInfo("Asia/Shanghai")

    async def recordings_of_action(self, action_id: str) -> list[dict[str, Any]]:
        """Every recording of the action, with its segments not deleted and its gaps."""
        await self._evidence.sync()
        return await asyncio.to_thread(self._evidence.catalog.action_recordings, action_id)

    async def recordings_for_decision(self, action_id: str) -> list[dict[str, Any]]:
        return [r for r in await self.recordings_of_action(action_id) if r["segments"]]

    async def recording(self, action_id: str, recording_id: str) -> dict[str, Any] | None:
        return next((r for r in await self.recordings_of_action(action_id) if r["recording_id"] == recording_id),
                    None)

    async def completeness(self, action: Action) -> dict[str, Any]:
        """Every unit of the action, its recorded intervals and every gap with its cause, how
        each recording ended, and (with a break store) the rule breaks of the rules of procedure
        and the notice."""
        recs = await self.recordings_of_action(action.id)
        units = []
        for unit_id in action.units:
            mine = [r for r in recs if r["unit_id"] == unit_id]
            intervals = recorded_intervals(mine)
            endings = [END_STATEMENTS[r["end_cause"]] for r in mine if r["end_cause"] in END_STATEMENTS]
            statement = "recorded" if intervals else "no recording of this unit for this action"
            units.append({
                "unit_id": unit_id,
                "recordings": [{"recording_id": r["recording_id"], "opened": r["opened"], "closed": r["closed"],
                                "end_cause": r["end_cause"], "segments": len(r["segments"]),
                                "deleted_segments": r["deleted_segments"]} for r in mine],
                "recorded_intervals": intervals,
                "gaps": [g for r in mine for g in r["gaps"]],
                "statement": "; ".join([statement, *dict.fromkeys(endings)]),
            })
        stated = {"case_number": action.case_number, "action_id": action.id, "action_title": action.title,
                  "action_started": iso_millis(action.started_at) if action.started_at else None,
                  "action_ended": iso_millis(action.ended_at) if action.ended_at else None,
                  "units": units, "stated_at": iso_millis(self._clock())}
        if self._breaks is not None:
            stated.update(await self._procedure(action))
        return stated

    async def _procedure(self, action: Action) -> dict[str, Any]:
        """The rule breaks of the action, oldest first, each with a line in Chinese and in English
        (times in the court's zone), and the notice."""
        assert self._breaks is not None
        breaks = []
        for brk in await self._breaks.for_action(action.id):
            zh, en = describe(brk, self._zone)
            breaks.append({"rule": brk.rule, "unit_id": brk.unit_id, "start": iso_millis(brk.started_at),
                           "end": iso_millis(brk.ended_at) if brk.ended_at is not None else None,
                           "statement": zh, "statement_en": en})
        notice = await self._breaks.notice(action.id)
        return {"time_zone": self._zone.key, "procedure_breaks": breaks,
                "notice": None if notice is None else {"notice_at": iso_millis(notice.notice_at),
                                                       "marked_by": notice.marked_by, "unit_id": notice.unit_id}}

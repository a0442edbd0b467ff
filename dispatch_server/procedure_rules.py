"""流程预警: which rules of procedure do not hold for a running action right now. Pure, no I/O.

:func:`breaches` takes what the live check knows of an action's team (who records, where each
unit last was, whether the notice was marked) and answers the rule breaks that should be open,
keyed by ``(rule, unit_id)``. :mod:`dispatch_server.compliance` opens the breaks that are not
open yet and closes those no longer answered.

- ``min_recorders``: fewer team units record at once than the action type requires (one break for
  the action, ``unit_id`` None; its detail names who records and who does not).
- ``record_before_start``: a team unit that was not recording when the action started; checked
  once at the start (``starting``), and afterwards held only until that unit records.
- ``stay_in_area``: a team unit whose latest fix lies outside the action's area (a unit with no
  fix yet is not judged); nothing when the action has no usable area.
- ``notice``: the spoken notice not marked ``notice_within_s`` after the start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from geo.geofence import Geofence

from .config import ProcedureRule

Key = tuple[str, str | None]  # (rule, unit_id)


@dataclass(frozen=True)
class TeamState:
    """What is known of an action's team at one moment."""

    units: tuple[str, ...]
    recording: frozenset[str]  # team units publishing and being recorded
    positions: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # unit -> latest (lat, lon)
    started_at: float = 0.0
    now: float = 0.0
    notice_at: float | None = None
    missing_at_start: frozenset[str] = frozenset()  # units with an open record_before_start break


def breaches(rule: ProcedureRule, team: TeamState, fence: Geofence | None, *,
             starting: bool = False) -> dict[Key, dict[str, Any]]:
    """The breaks that should be open now, with the detail each opens with."""
    out: dict[Key, dict[str, Any]] = {}
    recording = team.recording & set(team.units)
    not_recording = sorted(u for u in team.units if u not in recording)
    if rule.min_recorders > 0 and len(recording) < rule.min_recorders:
        out[("min_recorders", None)] = {"running": len(recording), "required": rule.min_recorders,
                                        "recording": sorted(recording), "missing": not_recording}
    if rule.record_before_start:
        candidates = set(team.units) if starting else team.missing_at_start
        for unit_id in not_recording:
            if unit_id in candidates:
                out[("record_before_start", unit_id)] = {}
    if rule.stay_in_area and fence is not None:
        for unit_id in team.units:
            where = team.positions.get(unit_id)
            if where is not None and not fence.contains(*where):
                out[("stay_in_area", unit_id)] = {"lat": where[0], "lon": where[1],
                                                  "distance_m": round(fence.signed_distance_m(*where), 1)}
    if rule.notice_within_s > 0 and team.notice_at is None and team.now >= team.started_at + rule.notice_within_s:
        out[("notice", None)] = {"within_s": rule.notice_within_s}
    return out


def notice_due(rule: ProcedureRule, started_at: float) -> float | None:
    """When the notice rule breaks if nobody marks the notice; None when the type needs none."""
    return started_at + rule.notice_within_s if rule.notice_within_s > 0 else None

"""Which rules of procedure (流程预警) do not hold for a team at one moment: the pure evaluation."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from dispatch_server.config import ProcedureRule
from dispatch_server.procedure_breaks import ProcedureBreak, describe
from dispatch_server.procedure_rules import TeamState, breaches, notice_due
from geo.geofence import Geofence

pytestmark = pytest.mark.both_engines  # the outbox, actions, alerts... on SQLite and on PostgreSQL

SEIZURE = ProcedureRule("seizure")  # 2 recorders, recording before start, stay in area, notice in 300 s
AREA = Geofence.from_area({"type": "circle", "lat": 38.04, "lon": 114.51, "radius_m": 200})
INSIDE, OUTSIDE = (38.0401, 114.5101), (38.05, 114.51)  # the second ~1.1 km north


def team(recording: set[str], **kw: object) -> TeamState:
    base: dict[str, object] = {"units": ("bc-01", "bc-02"), "recording": frozenset(recording),
                               "started_at": 1000.0, "now": 1010.0}
    base.update(kw)
    return TeamState(**base)  # type: ignore[arg-type]


def test_two_recorders_hold_the_rule_one_does_not() -> None:
    assert breaches(SEIZURE, team({"bc-01", "bc-02"}), AREA) == {}
    found = breaches(SEIZURE, team({"bc-01"}), AREA)
    assert found == {("min_recorders", None): {"running": 1, "required": 2, "recording": ["bc-01"],
                                               "missing": ["bc-02"]}}
    # A unit outside the team recording does not count.
    assert ("min_recorders", None) in breaches(SEIZURE, team({"bc-01", "bc-99"}), AREA)
    assert breaches(ProcedureRule("x", min_recorders=0, record_before_start=False, stay_in_area=False,
                                  notice_within_s=0), team(set()), AREA) == {}


def test_recording_before_start_is_judged_at_the_start_and_held_until_the_unit_records() -> None:
    at_start = breaches(SEIZURE, team({"bc-01"}), AREA, starting=True)
    assert ("record_before_start", "bc-02") in at_start and ("record_before_start", "bc-01") not in at_start
    # Later, only units already found missing are held, and only while they still do not record.
    later = breaches(SEIZURE, team({"bc-01"}), AREA)
    assert not any(rule == "record_before_start" for rule, _ in later)
    held = breaches(SEIZURE, team({"bc-01"}, missing_at_start=frozenset({"bc-02"})), AREA)
    assert ("record_before_start", "bc-02") in held
    cleared = breaches(SEIZURE, team({"bc-01", "bc-02"}, missing_at_start=frozenset({"bc-02"})), AREA)
    assert cleared == {}
    no_rule = ProcedureRule("seizure", record_before_start=False)
    assert not any(r == "record_before_start" for r, _ in breaches(no_rule, team(set()), AREA, starting=True))


def test_a_unit_outside_the_area_breaks_stay_in_area_and_a_unit_without_a_fix_is_not_judged() -> None:
    both = {"bc-01", "bc-02"}
    assert breaches(SEIZURE, team(both, positions={"bc-01": INSIDE}), AREA) == {}
    found = breaches(SEIZURE, team(both, positions={"bc-01": INSIDE, "bc-02": OUTSIDE}), AREA)
    assert list(found) == [("stay_in_area", "bc-02")]
    assert 900 < found[("stay_in_area", "bc-02")]["distance_m"] < 1100
    assert breaches(SEIZURE, team(both, positions={"bc-02": OUTSIDE}), None) == {}, "no area, nothing to leave"
    polygon = Geofence.from_area({"type": "polygon", "points": [[38.03, 114.50], [38.03, 114.52], [38.045, 114.51]]})
    assert breaches(SEIZURE, team(both, positions={"bc-01": INSIDE}), polygon) == {}
    assert list(breaches(SEIZURE, team(both, positions={"bc-01": OUTSIDE}), polygon)) == [("stay_in_area", "bc-01")]


def test_the_notice_is_due_within_its_time_and_a_mark_holds_it() -> None:
    both = {"bc-01", "bc-02"}
    assert notice_due(SEIZURE, 1000.0) == 1300.0
    assert notice_due(ProcedureRule("service", notice_within_s=0), 1000.0) is None
    assert breaches(SEIZURE, team(both, now=1299.9), AREA) == {}
    assert breaches(SEIZURE, team(both, now=1300.0), AREA) == {("notice", None): {"within_s": 300.0}}
    assert breaches(SEIZURE, team(both, now=5000.0, notice_at=1100.0), AREA) == {}
    assert breaches(SEIZURE, team(both, now=5000.0, notice_at=1400.0), AREA) == {}, "late, but marked: it holds now"


def test_a_break_reads_with_its_times_in_the_courts_zone() -> None:
    zone = ZoneInfo("Asia/Shanghai")
    start = 1_796_176_931.0  # 2026-12-02T02:02:11Z = 10:02:11 in Beijing
    brk = ProcedureBreak("pb-1", "act-1", "min_recorders", None, start, start + 329.0,
                         {"running": 1, "required": 2})
    zh, en = describe(brk, zone)
    assert zh == "10:02:11–10:07:40 仅一台记录仪在录（要求至少 2 台）"
    assert en == "10:02:11–10:07:40 only one recorder running (at least 2 required)"
    zh, en = describe(ProcedureBreak("pb-2", "act-1", "stay_in_area", "bc-02", start, None, {}), zone)
    assert zh == "10:02:11–（未结束） 单位 bc-02 不在行动区域内"
    assert en == "10:02:11– (ongoing) unit bc-02 outside the action's area"
    zh, en = describe(ProcedureBreak("pb-3", "act-1", "notice", None, start, start + 60, {"within_s": 300.0}), zone)
    assert "5 分钟内未标记告知" in zh and "within 5 min" in en

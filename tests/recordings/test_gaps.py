"""Gaps of a recording: a wait before the first frame is no gap, but one carried over from another
node (``node_failover``) is, and it names that node."""

from __future__ import annotations

from recordings.gaps import CAUSES, Gaps


def test_a_wait_before_the_first_frame_is_not_a_gap() -> None:
    gaps = Gaps("rec-1")
    gaps.begin(100.0, "link_lost")
    assert gaps.end(105.0, recorded=False) is None


def test_a_gap_carried_from_a_dead_node_is_written_before_the_first_frame_with_its_detail() -> None:
    gaps = Gaps("rec-1")
    gaps.carry(100.0, "node_failover", "node node-a stopped publishing the unit")
    gap = gaps.end(104.5, recorded=False)
    assert gap is not None and gap["cause"] == "node_failover" and gap["seconds"] == 4.5
    assert gap["detail"] == "node node-a stopped publishing the unit"
    assert "node_failover" in CAUSES
    gaps.begin(200.0, "link_lost")  # later gaps are plain again
    later = gaps.end(201.0, recorded=True)
    assert later is not None and "detail" not in later


def test_a_carried_gap_still_open_at_close_runs_to_the_close() -> None:
    gaps = Gaps("rec-1")
    gaps.carry(100.0, "node_failover", "node node-a")
    end_cause, gap = gaps.at_close(110.0, recorded=False)
    assert end_cause is None and gap is not None and gap["seconds"] == 10.0

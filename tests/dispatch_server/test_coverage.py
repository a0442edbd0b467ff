"""Coverage of an action by its recorders, checked against a brute-force count per second."""

from __future__ import annotations

import random

from dispatch_server.coverage import Shortfall, coverage, merge


def test_two_recorders_with_a_gap_in_one() -> None:
    c = coverage({"a": [(0, 100)], "b": [(0, 40), (70, 100)]}, 0, 100, 2)
    assert c.covered_s == 70
    assert c.shortfalls == (Shortfall(40, 70, 1),)
    assert abs(c.ratio - 0.7) < 1e-9


def test_a_unit_counts_once_however_its_intervals_overlap() -> None:
    c = coverage({"a": [(0, 60), (30, 100), (50, 55)]}, 0, 100, 2)
    assert c.covered_s == 0 and c.shortfalls == (Shortfall(0, 100, 1),)


def test_nothing_recorded_and_nothing_required() -> None:
    assert coverage({}, 10, 20, 2).shortfalls == (Shortfall(10, 20, 0),)
    assert coverage({}, 10, 20, 0).ratio == 1.0
    assert coverage({"a": [(0, 5)]}, 10, 10, 2).ratio == 1.0


def test_intervals_outside_the_action_are_cut() -> None:
    c = coverage({"a": [(-50, 30)], "b": [(20, 500)]}, 0, 100, 2)
    assert c.covered_s == 10
    assert c.shortfalls == (Shortfall(0, 20, 1), Shortfall(30, 100, 1))


def test_merge() -> None:
    assert merge([(5, 6), (1, 3), (3, 4), (2, 2), (9, 8)]) == [(1, 4), (5, 6)]


def test_against_a_count_per_second() -> None:
    rng = random.Random(7)
    for _ in range(200):
        starts = [[rng.randint(-10, 100) for _ in range(rng.randint(0, 4))] for _ in range(rng.randint(0, 4))]
        units = {f"u{k}": [(s, s + rng.randint(1, 30)) for s in ss] for k, ss in enumerate(starts)}
        required = rng.randint(0, 3)
        c = coverage(units, 0, 100, required)
        per_second = [sum(any(s <= t < e for s, e in iv) for iv in units.values()) for t in range(100)]
        assert c.covered_s == sum(n >= required for n in per_second)
        short = sum(sf.seconds for sf in c.shortfalls)
        assert short == sum(n < required for n in per_second)
        for sf in c.shortfalls:
            assert all(per_second[t] == sf.running for t in range(int(sf.start), int(sf.end)))

"""Multi-row statements come in a few fixed sizes, so SQLite's statement cache stays small."""

from __future__ import annotations

from collections import Counter

from dispatch_server.stores.multirow import SIZES, flat, marks, pieces, slots


def test_rows_are_cut_in_order_into_runs_of_the_fixed_sizes() -> None:
    for n in range(0, 1100):
        rows = list(range(n))
        runs = list(pieces(rows))
        assert [r for run in runs for r in run] == rows
        sizes = Counter(len(run) for run in runs)
        assert set(sizes) <= set(SIZES)
        assert all(count <= 3 for size, count in sizes.items() if size != SIZES[0])
        assert sizes[SIZES[0]] == n // SIZES[0]


def test_placeholders_and_parameters() -> None:
    assert marks(2, 3) == "(?,?,?),(?,?,?)" and marks(1, 1) == "(?)"
    assert slots(3) == "?,?,?"
    assert flat([(1, "a"), (2, "b")]) == [1, "a", 2, "b"]

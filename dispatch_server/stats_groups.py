"""Day summaries added up by group: the counting half of :mod:`dispatch_server.statistics`.

Every day summary (:mod:`dispatch_server.stores.stats_days`, :mod:`recordings.catalog_stats`)
counts by **cell**, an action and a unit. A grouping says which groups each cell is in (an action
of two officers is in both officers' groups; a cell of no action in the group ``""``);
:class:`Groups` numbers the groups and spreads the cells' counts and values over them with numpy,
so a year (a million instructions, 22,000 cells) adds up in well under a second. Percentiles are
nearest-rank over every value, as exact as the values: the value at position ``ceil(p * n / 100)``
of the group's sorted values.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

import numpy as np

from .stores.stats_days import DaySummary, Values

TOTALS = "*"


class Groups:
    """The groups met so far, numbered, and which of them each cell is in (``keys_of(action, unit)``).

    One instance serves a grouping while the actions do not change: what it learnt of cells and
    days (by ``memo``, a day's start and stamp) is used again by the next request."""

    def __init__(self, keys_of: Callable[[str, str], Sequence[str]]) -> None:
        self.names: list[str] = []
        self._number: dict[str, int] = {}
        self._keys_of = keys_of
        self._cells: dict[tuple[str, str], tuple[int, ...]] = {}
        self._days: dict[Any, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def of(self, cells: Sequence[tuple[str, str]], memo: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """For each cell, how many groups it is in and where its groups start in the second array,
        which lists them: ``(count per cell, group numbers)``."""
        with self._lock:
            found = self._days.get(memo) if memo is not None else None
            if found is None:
                found = self._of(cells)
                if memo is not None:
                    if len(self._days) >= 4000:  # days that changed since: forget them all now and then
                        self._days.clear()
                    self._days[memo] = found
            return found

    def _of(self, cells: Sequence[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
        counts = np.empty(len(cells), np.int64)
        flat: list[int] = []
        for i, cell in enumerate(cells):
            found = self._cells.get(cell)
            if found is None:
                found = self._cells[cell] = tuple(self._group(k) for k in dict.fromkeys(self._keys_of(*cell)))
            counts[i] = len(found)
            flat += found
        return counts, np.array(flat, np.int64)

    def _group(self, key: str) -> int:
        n = self._number.get(key)
        if n is None:
            n = self._number[key] = len(self.names)
            self.names.append(key)
        return n


def spread(item_cell: np.ndarray, cell_groups: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray | None, np.ndarray]:
    """Items (by their cell) put into each group of their cell: ``(item index, group)`` pairs; the
    item index is None when each item is in one group (the pairs are the items in order)."""
    per_cell, flat = cell_groups
    if not len(item_cell):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if len(flat) == len(per_cell):  # every cell in one group
        return None, flat[item_cell]
    first = np.cumsum(per_cell) - per_cell
    times = per_cell[item_cell]
    item = np.repeat(np.arange(len(item_cell)), times)
    within = np.arange(len(item)) - np.repeat(np.cumsum(times) - times, times)
    return item, flat[first[item_cell][item] + within]


class Pile:
    """Values of one kind (a latency) gathered over days, by group and all together."""

    def __init__(self) -> None:
        self._values: list[np.ndarray] = []
        self._groups: list[np.ndarray] = []
        self._all: list[np.ndarray] = []

    def add(self, values: Values, cell_groups: tuple[np.ndarray, np.ndarray]) -> None:
        if not len(values.x):
            return
        cell = np.repeat(np.arange(len(values.n)), values.n)
        item, group = spread(cell, cell_groups)
        self._values.append(values.x if item is None else values.x[item])
        self._groups.append(group)
        self._all.append(values.x)

    def percentiles(self, names: list[str], points: Sequence[int]) -> dict[str, dict[str, Any]]:
        """``{group: {"n", "p50", ..., "max"}}`` for the groups that have values, and the totals as
        :data:`TOTALS`."""
        if not self._all:
            return {}
        out = _picked(np.concatenate(self._values), np.concatenate(self._groups), names, points)
        every = np.concatenate(self._all)
        out |= _picked(every, np.zeros(len(every), np.int64), [TOTALS], points)
        return out


def _picked(values: np.ndarray, groups: np.ndarray, names: list[str],
            points: Sequence[int]) -> dict[str, dict[str, Any]]:
    n = np.bincount(groups, minlength=len(names))
    present = np.nonzero(n)[0]
    start = (np.cumsum(n) - n)[present]
    if len(names) == 1:
        v = np.sort(values)
    elif len(present) <= 256:  # each group's values together (a radix sort), then each group sorted
        v = values[np.argsort(groups.astype(np.int16 if len(names) < 2**15 else np.int64), kind="stable")]
        for s, c in zip(start.tolist(), n[present].tolist(), strict=True):
            v[s:s + c].sort()
    else:  # many small groups: by value, then by group keeping that order
        by_value = np.argsort(values)
        small = groups[by_value].astype(np.int16 if len(names) < 2**15 else np.int64)
        v = values[by_value[np.argsort(small, kind="stable")]]
    count = n[present]
    keys = ["n", *(f"p{p}" for p in points), "max"]
    columns = [count.tolist(), *(v[start + (p * count + 99) // 100 - 1].tolist() for p in points),
               v[start + count - 1].tolist()]
    return {names[g]: dict(zip(keys, row, strict=True))
            for g, row in zip(present.tolist(), zip(*columns, strict=True), strict=True)}


class Tally:
    """Counts by (group, code) gathered over days, where a code is a tuple (an instruction's type
    and state, an alert's kind) and each item may carry several counts (``width``)."""

    def __init__(self, width: int) -> None:
        self._codes: dict[tuple[str, ...], int] = {}
        self.width = width
        self._rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (group, code, counts)
        self._totals: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, cell: np.ndarray, codes: Sequence[tuple[str, ...]], code: np.ndarray, counts: np.ndarray,
            cell_groups: tuple[np.ndarray, np.ndarray]) -> None:
        if not len(cell):
            return
        mine = np.array([self._codes.setdefault(tuple(c), len(self._codes)) for c in codes], np.int64)
        item, group = spread(cell, cell_groups)
        counts = counts.reshape(len(cell), self.width)
        self._rows.append((group, mine[code] if item is None else mine[code][item],
                           counts if item is None else counts[item]))
        self._totals.append((mine[code], counts))

    def sums(self, names: list[str]) -> tuple[list[tuple[str, ...]], np.ndarray, np.ndarray]:
        """``(codes, by group, totals)``: the counts of each group and code (an array of shape
        ``(groups, codes, width)``) and of each code over all items (``(codes, width)``)."""
        codes = list(self._codes)
        if not self._rows:
            return codes, np.zeros((len(names), len(codes), self.width)), np.zeros((len(codes), self.width))

        def added(group: np.ndarray, code: np.ndarray, counts: np.ndarray, groups: int) -> np.ndarray:
            at = group * len(codes) + code
            return np.stack([np.bincount(at, weights=counts[:, j], minlength=groups * len(codes))
                             for j in range(self.width)], axis=1).reshape(groups, len(codes), self.width)

        group, code, counts = (np.concatenate([r[i] for r in self._rows]) for i in range(3))
        per_group = added(group, code, counts, len(names))
        code = np.concatenate([t[0] for t in self._totals])
        totals = added(np.zeros(len(code), np.int64), code, np.concatenate([t[1] for t in self._totals]), 1)[0]
        return codes, per_group, totals


class Counted:
    """Instructions and alerts of a period by group: the days :meth:`add` was given, added up at
    once by :meth:`finish` (one numpy pass over all the days, not one per day)."""

    def __init__(self, groups: Groups) -> None:
        self.groups = groups
        self.instructions = Tally(1)
        self.alerts = Tally(3)
        self.delivery, self.ack, self.sos = Pile(), Pile(), Pile()
        self._days: list[tuple[DaySummary, tuple[np.ndarray, np.ndarray]]] = []

    def add(self, day: DaySummary) -> None:
        self._days.append((day, self.groups.of(day.cells, None if day.stamp is None else ("db", day.start, day.stamp))))

    def finish(self) -> None:
        days = self._days
        if not days:
            return
        cg = (np.concatenate([g[0] for _, g in days]), np.concatenate([g[1] for _, g in days]))
        offset = np.cumsum([0] + [len(d.cells) for d, _ in days[:-1]])

        def coded(codes: list[Sequence[tuple[str, ...]]], code: list[np.ndarray]) -> tuple[list[tuple[str, ...]],
                                                                                          np.ndarray]:
            number: dict[tuple[str, ...], int] = {}
            mapped = [np.array([number.setdefault(tuple(c), len(number)) for c in cs], np.int64)[k] if len(k) else k
                      for cs, k in zip(codes, code, strict=True)]
            return list(number), np.concatenate(mapped)

        codes, code = coded([d.codes for d, _ in days], [d.ins_code for d, _ in days])
        self.instructions.add(np.concatenate([d.ins_cell + o for (d, _), o in zip(days, offset, strict=True)]),
                              codes, code, np.concatenate([d.ins_n for d, _ in days]), cg)
        kinds, kind = coded([[(k,) for k in d.kinds] for d, _ in days], [d.alert_kind for d, _ in days])
        self.alerts.add(np.concatenate([d.alert_cell + o for (d, _), o in zip(days, offset, strict=True)]),
                        kinds, kind, np.concatenate([d.alert_n for d, _ in days]), cg)
        for pile, of in ((self.delivery, "delivery"), (self.ack, "ack"), (self.sos, "sos")):
            values = [getattr(d, of) for d, _ in days]
            pile.add(Values(np.concatenate([v.n for v in values]), np.concatenate([v.x for v in values])), cg)


def recorded(days: Sequence[tuple[Sequence[tuple[str, str]], np.ndarray, Any]], groups: Groups) -> dict[str, float]:
    """Recorded seconds by group (and :data:`TOTALS`) from each day's ``(cells, seconds per cell,
    memo)`` (see :meth:`Groups.of`)."""
    sums: dict[str, float] = {}
    total = 0.0
    for cells, seconds, memo in days:
        if not len(cells):
            continue
        item, group = spread(np.arange(len(cells)), groups.of(cells, memo))
        per = np.bincount(group, weights=seconds if item is None else seconds[item], minlength=len(groups.names))
        for g in np.nonzero(per)[0]:
            sums[groups.names[g]] = sums.get(groups.names[g], 0.0) + float(per[g])
        total += float(seconds.sum())
    return sums | {TOTALS: total}

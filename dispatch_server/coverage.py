"""Recording coverage of an action: how long the required number of recorders ran at once.

The rules of procedure (:class:`dispatch_server.config.ProcedureRule`) require, for seizure,
search and eviction, that at least two recorders run throughout the action. Coverage is the time
during which at least ``required`` distinct units were recording, divided by the action's time;
the stretches where fewer ran are the shortfalls a completeness statement and a report list
("10:02:11–10:07:40 only one recorder running").

Input is what each unit recorded, as ``(start, end)`` epoch-second intervals (sealed segments or
recordings less their gaps); a unit counts once however its intervals overlap. Pure functions, no
I/O: statistics, the live rule check and the per-action report all use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping


@dataclass(frozen=True)
class Shortfall:
    """A stretch of the action during which fewer recorders ran than required."""

    start: float
    end: float
    running: int  # the number of recorders that did run during it

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Coverage:
    start: float
    end: float
    required: int
    covered_s: float  # time with at least ``required`` recorders running
    shortfalls: tuple[Shortfall, ...]

    @property
    def total_s(self) -> float:
        return max(0.0, self.end - self.start)

    @property
    def ratio(self) -> float:
        """Covered time ÷ action time; 1.0 for an action of no length or with nothing required."""
        return 1.0 if self.total_s <= 0 else min(1.0, self.covered_s / self.total_s)


def merge(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping or touching intervals joined; empty and reversed ones dropped; sorted."""
    out: list[tuple[float, float]] = []
    for s, e in sorted((s, e) for s, e in intervals if e > s):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def coverage(by_unit: Mapping[str, Iterable[tuple[float, float]]], start: float, end: float,
             required: int) -> Coverage:
    """Coverage of ``[start, end)`` by the units' recorded intervals, ``required`` at once."""
    if end <= start:
        return Coverage(start, end, required, 0.0, ())
    if required <= 0:
        return Coverage(start, end, required, end - start, ())
    events: list[tuple[float, int]] = []
    for intervals in by_unit.values():
        for s, e in merge(intervals):
            s, e = max(s, start), min(e, end)
            if e > s:
                events.append((s, 1))
                events.append((e, -1))
    events.sort()
    covered = 0.0
    shortfalls: list[Shortfall] = []
    running, t = 0, start
    i = 0
    while True:
        nxt = events[i][0] if i < len(events) else end
        if nxt > t:
            if running >= required:
                covered += nxt - t
            elif shortfalls and shortfalls[-1].end == t and shortfalls[-1].running == running:
                shortfalls[-1] = Shortfall(shortfalls[-1].start, nxt, running)
            else:
                shortfalls.append(Shortfall(t, nxt, running))
            t = nxt
        if i >= len(events):
            break
        while i < len(events) and events[i][0] == nxt:
            running += events[i][1]
            i += 1
    return Coverage(start, end, required, covered, tuple(shortfalls))

"""Multi-row statements (``VALUES (?,?),(?,?),...``, ``IN (?,?,...)``) in a few fixed sizes.

Many rows in one statement instead of one statement per row: each statement the database
thread runs hands the GIL to the event loop and back (see ``write_group.py``). The sizes are
fixed because SQLite compiles every distinct statement text, and Python's ``sqlite3`` keeps the
last 128 compiled: a 500-row insert of 20 columns compiles to about 0.9 MiB, so statements sized
to whatever number of rows came along would fill that cache with ~100 MiB. With :data:`SIZES`,
each statement text has at most 5 shapes, and ``n`` rows take ``n // 256`` statements plus at
most 3 of each smaller size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

SIZES = (256, 64, 16, 4, 1)  # rows per statement; at 20 values a row, 5,120 of SQLite's 32,766 variables


def pieces(rows: Sequence[T]) -> Iterator[Sequence[T]]:
    """``rows`` in order, cut into runs whose lengths are in :data:`SIZES`, largest first."""
    start = 0
    for size in SIZES:
        while len(rows) - start >= size:
            yield rows[start:start + size]
            start += size


def marks(rows: int, width: int) -> str:
    """``(?,?),(?,?)`` for ``rows`` rows of ``width`` values (``width=1``: ``(?),(?)``)."""
    return ",".join(["(" + ",".join("?" * width) + ")"] * rows)


def slots(n: int) -> str:
    """``?,?,?`` for an ``IN (...)`` list of ``n`` values."""
    return ",".join("?" * n)


def flat(rows: Sequence[Sequence[object]]) -> list[object]:
    """The parameters of ``rows``, row after row."""
    return [value for row in rows for value in row]

"""Durable record of applied instructions, one JSON line each, deduplicated by instruction id.

The server redelivers an instruction until it sees the acknowledgement, and a unit may restart
between applying and acknowledging; the ids loaded from the file at start make the second
delivery a no-op. Lines are ``{"id": ..., "type": ..., "seq": ..., "applied_at": ISO 8601 UTC}``
(microseconds, :func:`utctime.iso_micro`; ``seq`` only for instructions pulled with one).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

from utctime import iso_micro

logger = logging.getLogger(__name__)


def _key(instruction_id: Any) -> str:
    # Ids compare by their JSON form, so 7 and "7" stay distinct while surviving a restart.
    return json.dumps(instruction_id, sort_keys=True)


class AppliedLog:
    """Appends applied instructions to ``path``; file writes run in a worker thread."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._ids: set[str] = set()
        self._lock = asyncio.Lock()
        self.max_seq = 0  # highest outbox sequence number applied (0: none or unknown)

    @classmethod
    async def open(cls, path: Path, clock: Callable[[], float] = time.time) -> AppliedLog:
        """Load the ids already in ``path`` (a missing file is an empty log)."""
        log = cls(path, clock)
        log._ids, log.max_seq = await asyncio.to_thread(cls._load_ids, path)
        return log

    @staticmethod
    def _load_ids(path: Path) -> tuple[set[str], int]:
        ids: set[str] = set()
        max_seq = 0
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ids, max_seq
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                ids.add(_key(entry["id"]))
                if isinstance(entry.get("seq"), int):
                    max_seq = max(max_seq, entry["seq"])
            except (ValueError, TypeError, KeyError):
                # A torn last line after a crash is expected; keep going.
                logger.warning("%s:%d: skipping unreadable applied-log line", path, number)
        return ids, max_seq

    def __contains__(self, instruction_id: Any) -> bool:
        return _key(instruction_id) in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    async def record(self, instruction_id: Any, instruction_type: str, seq: int | None = None) -> bool:
        """Append the instruction unless its id is already recorded; True if it was new.

        Returns after the line is flushed and fsynced, so an acknowledgement sent afterwards
        never refers to an instruction the file does not hold.
        """
        key = _key(instruction_id)
        async with self._lock:
            if key in self._ids:
                return False
            applied_at = self._clock()
            entry: dict[str, Any] = {"id": instruction_id, "type": instruction_type}
            if seq is not None:
                entry["seq"] = seq
            entry["applied_at"] = iso_micro(applied_at)
            await asyncio.to_thread(self._append, json.dumps(entry, ensure_ascii=False) + "\n")
            self._ids.add(key)
            if seq is not None:
                self.max_seq = max(self.max_seq, seq)
            return True

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

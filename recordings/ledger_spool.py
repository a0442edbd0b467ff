"""A recording's ledger entries, appended in order even while the ledger refuses writes.

When the archive's disk is full the ledger cannot append (``LedgerWriteError``, ENOSPC). The
recording's entries then wait here in memory, in order, and go in when space returns (the
writer retries on resume and before every later entry), so the ledger never shows a later
entry of a recording without an earlier one. If the server crashes meanwhile, recovery derives
the missing ``segment_sealed`` entries from the files, which stay on disk.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class LedgerWriter(Protocol):
    """What a recording writes to :class:`recordings.ledger.Ledger`."""

    def append(self, type: str, *, actor: str, where: str | None = None, outcome: str = "ok",
               data: dict[str, Any]) -> dict[str, Any]: ...


class LedgerSpool:
    """Appends as ``actor="system"``. Not thread-safe: one thread (the recording's sealer) uses it."""

    def __init__(self, ledger: LedgerWriter, where: str, recording_id: str) -> None:
        self._ledger = ledger
        self._where = where
        self._recording_id = recording_id
        self._pending: list[tuple[str, dict[str, Any]]] = []

    def append(self, type: str, data: dict[str, Any]) -> None:
        """Append now, behind any entry still waiting; keep it if the ledger refuses."""
        if self._pending:
            self._pending.append((type, data))
            self.retry()
            return
        try:
            self._ledger.append(type, actor="system", where=self._where, data=data)
        except Exception as exc:  # LedgerWriteError (ENOSPC) and any other failure to append
            logger.error("recording %s: ledger append failed (%s); kept pending", self._recording_id, exc)
            self._pending.append((type, data))

    def retry(self) -> None:
        """Append the waiting entries in order, up to the first the ledger still refuses."""
        while self._pending:
            type, data = self._pending[0]
            try:
                self._ledger.append(type, actor="system", where=self._where, data=data)
            except Exception:
                return
            self._pending.pop(0)

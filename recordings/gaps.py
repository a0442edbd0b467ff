"""Gaps in a recording: stretches without frames, for a reason we know.

A gap opens when frames stop for a known cause (``link_lost``, ``unit_stopped``,
``access_revoked``, ``server_stopped`` (a planned stop), ``disk_full``, ``recorder_overflow``,
``server_fault`` (a crash, found by recovery at the next start), ``node_failover`` (the unit
published on another node that died or lost it, and publishes on this one now: the recording here
begins with that gap, its ``detail`` naming the other node), ``worker_restarted`` (the media worker
process the unit published through died and was restarted)) and is written to the ledger as a
``gap`` entry when frames resume or the recording closes. A unit that does not
come back before the recording closes has not left a gap: that is where the recording ends
(its cause becomes the ``end_cause`` of ``recording_closed``).
"""

from __future__ import annotations

from typing import Any

from utctime import iso_millis

# ``server_shutdown``: what earlier versions wrote for ``server_stopped``.
CAUSES = ("link_lost", "unit_stopped", "access_revoked", "server_stopped", "server_shutdown", "disk_full",
          "recorder_overflow", "server_fault", "node_failover",
          "worker_restarted")  # every cause a gap (or a recording's end) can have
END_CAUSES = frozenset({"link_lost", "unit_stopped", "access_revoked", "server_stopped", "server_shutdown",
                        "worker_restarted"})


def gap_entry(recording_id: str, start: float, end: float, cause: str, detail: str = "") -> dict[str, Any]:
    """The data of a ``gap`` ledger entry (``end`` never before ``start``); ``detail`` only when given."""
    end = max(start, end)
    out: dict[str, Any] = {"recording_id": recording_id, "start": iso_millis(start), "end": iso_millis(end),
                           "cause": cause, "seconds": round(end - start, 3)}
    if detail:
        out["detail"] = detail
    return out


class Gaps:
    """The gap open now, if any. Writer thread only."""

    def __init__(self, recording_id: str) -> None:
        self._recording_id = recording_id
        self._open: tuple[float, str] | None = None  # (start, cause)
        self._carried: str | None = None  # detail of a gap carried over from another node, while open

    def begin(self, at: float, cause: str) -> None:
        """Frames stopped at ``at`` for ``cause``; an open gap keeps its own start and cause."""
        if self._open is None:
            self._open = (at, cause)

    def carry(self, at: float, cause: str, detail: str) -> None:
        """Frames stopped at ``at`` elsewhere (``node_failover``: on another node): unlike a wait
        before the first frame, this gap is written even when nothing was recorded here yet."""
        if self._open is None:
            self._open = (at, cause)
            self._carried = detail

    def end(self, at: float, recorded: bool) -> dict[str, Any] | None:
        """Frames resume at ``at``: the ``gap`` entry to write, if a gap was open. Before the
        first recorded frame (``recorded`` false) the wait is not a gap and nothing is written."""
        if self._open is None:
            return None
        start, cause = self._open
        carried, self._carried = self._carried, None
        self._open = None
        if carried is not None:
            return gap_entry(self._recording_id, start, at, cause, carried)
        return gap_entry(self._recording_id, start, at, cause) if recorded else None

    def at_close(self, at: float, recorded: bool) -> tuple[str | None, dict[str, Any] | None]:
        """The recording closes at ``at``: ``(end_cause, gap entry)``. A unit that went away and
        did not come back ends the recording (``end_cause``); a disk that filled up or a fault
        lost the tail, which is a gap up to the close."""
        if self._open is not None and self._open[1] in END_CAUSES:
            cause = self._open[1]
            self._open = None
            return cause, None
        return None, self.end(at, recorded)

"""Which units have a live Socket.IO link to this node (a unit may hold several while it reconnects).

The ``/unit`` namespace records links as they open and close; talk-back asks whether a unit can
hear this node; at shutdown the node marks the units still linked to it as disconnected.
"""

from __future__ import annotations


class UnitLinks:
    def __init__(self) -> None:
        self._sids: dict[str, set[str]] = {}  # unit id -> Socket.IO sids on this node

    def opened(self, unit_id: str, sid: str) -> bool:
        """Record a link; True when it is the unit's first on this node."""
        sids = self._sids.setdefault(unit_id, set())
        sids.add(sid)
        return len(sids) == 1

    def closed(self, unit_id: str, sid: str) -> bool:
        """Forget a link; True when it was the unit's last on this node."""
        sids = self._sids.get(unit_id)
        if sids is None:
            return False
        sids.discard(sid)
        if sids:
            return False
        del self._sids[unit_id]
        return True

    def is_connected(self, unit_id: str) -> bool:
        return unit_id in self._sids

    def units(self) -> list[str]:
        return list(self._sids)

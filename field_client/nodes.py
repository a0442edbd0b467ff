"""The server nodes a unit knows (``--server`` given more than once), and the one it uses now.

A cluster's nodes share their state (PostgreSQL, Redis: docs/cluster.md), so a unit may talk to any
of them. It stays with one node while it can: after a link loss it first tries the same node
again, and only when connecting to that node fails does it move on to the next, round robin, with
the unit's usual backoff between attempts. Everything the unit remembers (applied instructions,
the last ``seq``, queued answers, buffered fixes) belongs to the unit, not to a node, so it carries
over to the next node unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Sequence

logger = logging.getLogger(__name__)


class ServerNodes:
    """Round robin over base URLs, in the order given; ``moved`` is set whenever ``current`` changes
    (what publishes over WHIP follows the link to the new node)."""

    def __init__(self, unit_id: str, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("at least one server URL is needed")
        self.unit_id = unit_id
        self.urls = tuple(urls)
        self._index = 0
        self.moved = asyncio.Event()

    @property
    def current(self) -> str:
        return self.urls[self._index]

    def __len__(self) -> int:
        return len(self.urls)

    def unreachable(self, url: str) -> None:
        """Connecting to ``url`` failed: the next attempt goes to the node after it. A failure of a
        node the unit has already left (a late report) changes nothing."""
        if len(self.urls) == 1 or url != self.current:
            return
        self._index = (self._index + 1) % len(self.urls)
        logger.info("unit %s: %s unreachable; trying %s next", self.unit_id, url, self.current)
        self.moved.set()

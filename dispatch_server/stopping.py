"""A planned stop of this node (the first SIGTERM or Ctrl+C), as the domain sees it.

While a planned stop runs, units and consoles are told the server is restarting (``server_restarting``,
so units reconnect by themselves and consoles show it instead of a wall of offline tiles), and
the procedure rules raise no ``unit_offline``/``stopped_publishing`` alert for what the stop
itself does (:mod:`dispatch_server.procedure`) and open no rule break
(:mod:`dispatch_server.compliance`). A crash (``kill -9``) is not a planned stop: nothing is
announced, and recovery at the next start records it as ``server_fault``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from utctime import iso_millis

logger = logging.getLogger(__name__)

Announce = Callable[[dict[str, Any]], Awaitable[None]]
ANNOUNCE_TIMEOUT_S = 1.0
MESSAGE = "服务器正在重启，连接将自动恢复 / the server is restarting; connections come back by themselves"


class Stopping:
    def __init__(self, announce: Announce, clock: Callable[[], float] = time.time) -> None:
        self._announce = announce
        self._clock = clock
        self.planned = False

    async def begin(self) -> None:
        """The stop is planned from now on; tell every unit and console (at most
        :data:`ANNOUNCE_TIMEOUT_S`: the stop does not wait for a slow link)."""
        if self.planned:
            return
        self.planned = True
        notice = {"reason": "server_stopped", "message": MESSAGE, "at": iso_millis(self._clock())}
        try:
            await asyncio.wait_for(self._announce(notice), ANNOUNCE_TIMEOUT_S)
        except Exception as exc:  # the stop goes on: units notice the link drop anyway
            logger.warning("not everyone was told of the restart: %r", exc)

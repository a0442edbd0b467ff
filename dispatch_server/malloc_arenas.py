"""glibc's malloc arenas for this process (``[server] malloc_arena_max``).

glibc gives each thread that allocates its own arena, up to eight per core, and every arena keeps
the memory freed into it. A recorded unit runs two threads (the recording's writer and its sealer,
:mod:`recordings.recording`), and their arenas held about 1.3 MB per unit beyond what they used
(docs/benchmarks.md, "Packet engine: CPU and memory"). The threads of this server hold the GIL
while they allocate, so they hardly ever contend for an arena: a small cap costs nothing
measurable here. Other C libraries (musl) have no such setting; there this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc <malloc.h>


def limit(arena_max: int) -> bool:
    """Cap glibc's malloc arenas at ``arena_max`` (0: leave glibc's default); call before any
    thread starts. True if the cap was set."""
    if arena_max <= 0:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        logger.info("malloc_arena_max: no glibc mallopt here; left as it is")
        return False
    if not mallopt(M_ARENA_MAX, arena_max):
        logger.warning("malloc_arena_max: mallopt refused %d", arena_max)
        return False
    return True

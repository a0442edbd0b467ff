"""Child processes of the suite die with it.

A suite killed from outside (CI's timeout, ^C twice, ``kill``) cannot run its fixtures' cleanup;
without this its servers, field clients and ``redis-server`` would live on and load the machine
for the next run. ``PR_SET_PDEATHSIG`` fires when the *thread* that forked exits, so it is asked
for only on the main thread, which lives as long as the suite.
"""

from __future__ import annotations

import ctypes
import signal
import threading
from typing import Callable

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def die_with_suite() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``Popen``/``create_subprocess_exec`` (None off the main thread)."""
    return _die_with_parent if threading.current_thread() is threading.main_thread() else None

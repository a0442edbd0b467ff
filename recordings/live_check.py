"""Is a server writing this archive now? The ledger's writer holds an exclusive ``flock`` on
``entries.jsonl`` (:class:`recordings.ledger.Ledger`) for as long as it runs.

On Linux ``/proc/locks`` answers without taking any lock (a verifier must never make a starting
server think the ledger is in use); elsewhere a shared lock is tried and dropped at once.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def _in_proc_locks(path: Path) -> bool | None:
    try:
        st = os.stat(path)
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (a blocked waiter has "->" after the number)
        if "->" in fields:
            continue
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[3] == "WRITE":
            try:
                major, minor, inode = fields[5].split(":")
                if (int(major, 16), int(minor, 16), int(inode)) == want:
                    return True
            except ValueError:
                continue
    return False


def ledger_in_use(entries: Path) -> bool:
    """True if a process (a running server) holds the ledger's writer lock."""
    found = _in_proc_locks(entries)
    if found is not None:
        return found
    try:
        fd = os.open(entries, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False

"""Shared plumbing of the benchmarks: a seeded data directory, the server subprocess, CPU and
percentiles. Every wait is bounded; every process started is stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dispatch_server.auth import Authenticator, hash_token, new_token  # noqa: E402
from dispatch_server.stores.accounts import Accounts  # noqa: E402
from dispatch_server.stores.engines import open_database  # noqa: E402

PASSWORD = "bench-password-1"


def seed(data: Path, unit_ids: list[str], url: str = "") -> list[str]:
    """Register units and the operator ``bench`` (in PostgreSQL when ``url`` is given, as
    ``[storage] url``); return ``"unit_id token"`` lines."""
    db = open_database(url, data)
    accounts = Accounts(db)
    lines = []
    for unit_id in unit_ids:
        token = new_token()
        accounts.add_unit(unit_id, "body", hash_token(token), time.time())
        lines.append(f"{unit_id} {token}")
    accounts.add_user("bench", "operator", Authenticator(accounts, 3600).hash_password(PASSWORD), time.time())
    db.close()
    return lines


def start_server(config: Path, timeout: float = 30.0, log: IO[str] | None = None,
                 source: Path = REPO) -> tuple[subprocess.Popen[str], str]:
    """``dispatch-server serve`` for ``config``; returns the process and its base URL. The server's
    log (stderr) goes to ``log``, or nowhere. ``source``: a checkout whose ``dispatch_server`` to
    run (``python -m`` finds it first in its working directory), e.g. an earlier commit's."""
    proc = subprocess.Popen([sys.executable, "-m", "dispatch_server", "--config", str(config), "serve"],
                            stdout=subprocess.PIPE, stderr=log or subprocess.DEVNULL, text=True, cwd=source)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "listening on " in line:
            return proc, line.split("listening on ", 1)[1].strip()
        if not line and proc.poll() is not None:
            break
    stop(proc)
    raise RuntimeError("the server did not start")


def stop(proc: subprocess.Popen[str], close_stdin: bool = False, timeout: float = 30.0) -> None:
    if close_stdin and proc.stdin:
        proc.stdin.close()
    elif proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_s(pid: int) -> float:
    """utime + stime of a process, all threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main_thread_cpu_s(pid: int) -> float:
    """utime + stime of a process's main thread (the event loop's), in seconds."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else float("nan")


def write_result(out: str, result: object) -> None:
    """Save a benchmark's figures as JSON and print them."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))

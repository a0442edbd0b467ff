"""``serve --demo N`` (what ``make run`` starts): the simulated units live and die with the server.

Ctrl+C in the terminal (SIGINT to the whole foreground process group) must stop the server and
its fleet once, cleanly: the server stops the fleet itself. A server killed with ``kill -9`` must
not leave the fleet behind, reconnecting to nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

import aiohttp

from tests.support.orphans import die_with_suite
from tests.support.processes import assert_clean, clean_env
from tests.support.server import PYTHON, REPO, add_user, login, write_config

PASSWORD = "demo-watch-pass-1"


class Demo:
    """``dispatch-server serve --demo N`` in a process group of its own, as a shell runs it."""

    def __init__(self, config: Path, units: int) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "dispatch_server", "--config", str(config), "serve", "--demo", str(units)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=clean_env(),
            start_new_session=True, preexec_fn=die_with_suite(),
        )
        self.log: list[str] = []
        self.url = ""
        self.ready = threading.Event()
        self.pump = threading.Thread(target=self._read, daemon=True)
        self.pump.start()
        assert self.ready.wait(60) and self.url, "\n".join(self.log[-40:])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line.rstrip("\n"))
            if "listening on " in line and not self.url:
                self.url = line.split("listening on ", 1)[1].strip()
                self.ready.set()
        self.ready.set()

    def output(self) -> str:
        self.pump.join(timeout=30)
        return "\n".join(self.log)

    def fleet_pid(self) -> int:
        """The ``field-client --fleet`` process the server started."""
        pids = self.children(b"field_client")
        if pids:
            return pids[0]
        raise AssertionError(f"no field-client child of the server:\n{self.output()[-3000:]}")

    def children(self, mark: bytes) -> list[int]:
        """The server's child processes with ``mark`` in their command line."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and any(mark in part for part in cmdline):
                found.append(int(entry))
        return found


def gone(pid: int) -> bool:
    """Exited (a zombie nobody reaps counts: it runs no more)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


async def publishing(url: str, token: str, want: int, timeout: float = 90.0) -> None:
    async with aiohttp.ClientSession() as http:
        end = time.monotonic() + timeout
        while True:
            async with http.get(f"{url}/api/units", headers={"Authorization": f"Bearer {token}"}) as r:
                units = (await r.json())["units"]
            live = [u["id"] for u in units if u["publishing"] and u["reachable"]]
            if len(live) >= want:
                return
            assert time.monotonic() < end, f"demo units not live: {units}"
            await asyncio.sleep(0.2)


async def test_ctrl_c_stops_the_server_and_its_simulated_units_once_and_cleanly(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", tmp_path / "data", media_workers=None)  # as make run: per core
    add_user(config, "op", "operator", PASSWORD)
    demo = Demo(config, 2)
    token = await login(demo.url, "op", PASSWORD)
    await publishing(demo.url, token, 2)
    fleet = demo.fleet_pid()
    workers = demo.children(b"media-worker")
    assert len(workers) == len(os.sched_getaffinity(0)), demo.output()[-3000:]

    os.killpg(demo.proc.pid, signal.SIGINT)  # what Ctrl+C in the terminal does
    assert demo.proc.wait(timeout=60) == 0
    wait_for(lambda: gone(fleet), 30, "the fleet ends with the server")
    wait_for(lambda: all(gone(w) for w in workers), 30, "the media workers end with the server")
    out = demo.output()
    assert_clean(out, "dispatch-server --demo")
    assert "stopped in" in out
    assert "forcing" not in out, out[-3000:]  # one signal each: nothing had to be forced
    assert "did not stop" not in out, out[-3000:]  # the media workers exit by themselves, not killed
    assert out.count("unpublished session") == 2, out[-3000:]


async def test_a_killed_server_leaves_no_simulated_units_behind(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", tmp_path / "data", media_workers=None)  # as make run: per core
    add_user(config, "op", "operator", PASSWORD)
    demo = Demo(config, 1)
    token = await login(demo.url, "op", PASSWORD)
    await publishing(demo.url, token, 1)
    fleet = demo.fleet_pid()
    workers = demo.children(b"media-worker")
    assert workers, demo.output()[-3000:]

    demo.proc.kill()
    demo.proc.wait(timeout=30)
    wait_for(lambda: gone(fleet), 30, "the fleet ends when its server is killed")
    wait_for(lambda: all(gone(w) for w in workers), 30, "the media workers end when their server is killed")
    assert_clean(demo.output(), "dispatch-server --demo")

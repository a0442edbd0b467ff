"""Starting real servers for tests: in-process on port 0, or as a ``dispatch-server`` subprocess."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.processes import assert_clean
from tests.support.secrets import remember

from .orphans import die_with_suite

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def write_config(path: Path, data_dir: Path, extra: str = "", *, media_workers: int | None = 0) -> Path:
    """A server's config file: ``extra`` (TOML sections) after the suite's basics. Media runs in the
    server's own process (``[media] workers = 0``) unless ``extra`` sets ``workers`` or
    ``media_workers`` says otherwise (None: the product's default, one worker per core)."""
    if media_workers is not None and not re.search(r"(?m)^workers\s*=", extra):
        line = f"workers = {media_workers}\n"
        extra = extra.replace("[media]\n", "[media]\n" + line, 1) if "[media]\n" in extra else \
            extra + ("" if not extra or extra.endswith("\n") else "\n") + "[media]\n" + line
    path.write_text(
        f'[storage]\ndata_dir = "{data_dir}"\n'
        "[metrics]\nport = -1\n"  # no metrics listener unless a test asks for one
        "[server]\nhost = \"127.0.0.1\"\nport = 0\nshutdown_grace_s = 3.0\n"
        + extra,
        encoding="utf-8",
    )
    return path


def cli(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "dispatch_server", "--config", str(config), *args],
        input=stdin, capture_output=True, text=True, timeout=60, cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")},
    )


def add_unit(config: Path, unit_id: str, kind: str = "body") -> str:
    out = cli(config, "add-unit", unit_id, "--kind", kind)
    assert out.returncode == 0, out.stderr
    return remember(out.stdout.strip().splitlines()[-1])


def add_user(config: Path, name: str, role: str, password: str) -> None:
    remember(password)
    out = cli(config, "add-user", name, "--role", role, stdin=password + "\n")
    assert out.returncode == 0, out.stderr


async def login(base: str, name: str, password: str) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/login", json={"username": name, "password": password}) as resp:
            assert resp.status == 200, await resp.text()
            return remember(str((await resp.json())["token"]))


@dataclass
class ServerProcess:
    """``dispatch-server serve`` in a subprocess; ``url`` once it said where it listens."""

    config: Path
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    url: str = ""
    log: list[str] = field(default_factory=list)
    _pump: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> "ServerProcess":
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")}
        env.update(self.env)
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "dispatch_server", "--config", str(self.config), "serve", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env,
            preexec_fn=die_with_suite(),
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.log.append(line.rstrip("\n"))
                if "listening on " in line and not self.url:
                    self.url = line.split("listening on ", 1)[1].strip()
                    ready.set()
            ready.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        if not ready.wait(timeout) or not self.url:
            self.stop()
            raise RuntimeError("server did not start:\n" + "\n".join(self.log[-40:]))
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill it (a crash); what it printed until then must still be clean."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self._drained()
        assert_clean(self.output(), "dispatch-server")

    def stop(self) -> int | None:
        """Stop it as an operator would (SIGTERM) and fail on a dirty output."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._drained()
        assert_clean(self.output(), "dispatch-server")
        return self.proc.returncode

    def _drained(self) -> None:
        """Wait until everything the process printed has been read."""
        if self._pump is not None:
            self._pump.join(timeout=10)

    def output(self) -> str:
        return "\n".join(self.log)


def wait_until(pred: Any, timeout: float, interval: float = 0.05) -> bool:
    """Poll a cheap condition from synchronous code (subprocess state, files)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return bool(pred())

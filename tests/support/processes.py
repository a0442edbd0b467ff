"""Real processes in tests (``field-client``, ``dispatch-server``, ``dispatch-audit``): started,
their output collected line by line, and checked.

A process whose output holds a traceback or a coroutine that was ``never awaited`` fails its
test, whatever else the test asserts: such a process looked as if it worked while part of it
silently did nothing.
"""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import sys
from pathlib import Path

from tests.support.secrets import found_in

from .orphans import die_with_suite

REPO = Path(__file__).resolve().parents[2]
DIRTY = ("Traceback (most recent call last)", "was never awaited")


def assert_clean(output: str, what: str) -> None:
    """Fail when ``output`` of the process ``what`` shows a traceback, an unawaited coroutine, or
    a secret the suite made (a token or a password: none belongs in a log)."""
    for marker in DIRTY:
        if marker in output:
            at = output.index(marker)
            raise AssertionError(f"{what} printed {marker!r}:\n{output[max(0, at - 2000):at + 4000]}")
    leaks = found_in(output)
    assert not leaks, f"{what} printed secrets: {leaks}"


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without ``DISPATCH_*`` overrides, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")}
    env.update(extra)
    return env


class Process:
    """An asyncio subprocess with stdout and stderr merged and collected line by line.

    With ``tty=True`` its standard input is a pseudo-terminal (what an officer at a vehicle
    terminal types into); :meth:`type` writes a line to it.
    """

    def __init__(self, proc: asyncio.subprocess.Process, what: str, tty_fd: int | None = None) -> None:
        self.proc = proc
        self.what = what
        self.lines: list[str] = []
        self._tty_fd = tty_fd
        self._seen = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, *args: str, tty: bool = False, env: dict[str, str] | None = None) -> Process:
        """``python ARGS...`` in the repository, e.g. ``Process.start("-m", "field_client", ...)``."""
        master: int | None = None
        stdin: int = asyncio.subprocess.DEVNULL
        if tty:
            master, slave = pty.openpty()
            stdin = slave
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, cwd=REPO, env=env or clean_env(), stdin=stdin,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, preexec_fn=die_with_suite(),
        )
        if tty:
            os.close(stdin)
        what = " ".join(a for a in args if not a.startswith("-"))[:60] or args[0]
        return cls(proc, what, master)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))
            self._seen.set()

    def type(self, line: str) -> None:
        """Type ``line`` and Enter on the process's terminal."""
        assert self._tty_fd is not None, "start the process with tty=True"
        os.write(self._tty_fd, (line + "\n").encode())

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    async def line_with(self, text: str, timeout: float = 30, after: int = 0) -> str:
        """The first line (from line ``after`` on) containing ``text``, waiting for it."""
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines[after:]:
                    if text in line:
                        return line
                self._seen.clear()
                if self._reader.done():
                    raise AssertionError(f"{self.what} ended without {text!r}:\n" + self.output())
                waiter = asyncio.ensure_future(self._seen.wait())
                try:
                    await asyncio.wait({self._reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()

    async def finished(self, timeout: float = 60, check: bool = True) -> int:
        """Wait for the process to end by itself (a one-shot command); fail on a dirty output."""
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
        return await self.stop(timeout=timeout, check=check) if check else code

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30, check: bool = True) -> int:
        """Signal the process, wait for it, and (``check``) fail on a dirty output."""
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            async with asyncio.timeout(timeout):
                code = await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        await self._reader
        if self._tty_fd is not None:
            os.close(self._tty_fd)
            self._tty_fd = None
        if check:
            assert_clean(self.output(), self.what)
        return code

    def output(self) -> str:
        return "\n".join(self.lines)

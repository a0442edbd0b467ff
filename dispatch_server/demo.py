"""Simulated units, so a newcomer sees live video at once (``serve --demo N``, ``make run``).

Each start gives the demo units fresh tokens (only hashes are stored, so old ones cannot be
reused), writes them to ``<data_dir>/demo-units.tokens`` (mode 0600) and runs them as one
``field-client --fleet N --auto-ack`` process (unattended: instructions are acknowledged, never
claimed done) against this server's own address: the same program a vehicle
terminal runs, in a process of its own, owned by the server and stopped with it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

from .auth import hash_token, new_token
from .config import DemoConfig
from .stores.accounts import Accounts

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0
PR_SET_PDEATHSIG = 1


def _stop_with_parent() -> None:
    """In the fleet's process, before it runs: SIGTERM when the server dies, even by ``kill -9``
    (Linux; elsewhere the fleet outlives a killed server until stopped)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class DemoUnits:
    def __init__(self, accounts: Accounts, config: DemoConfig, data_dir: Path) -> None:
        self._accounts = accounts
        self._config = config
        self._token_file = data_dir / "demo-units.tokens"
        self._proc: asyncio.subprocess.Process | None = None

    def _register(self) -> list[tuple[str, str]]:
        """Create (or re-token) the units; ``(unit_id, token)`` pairs."""
        units = []
        for i in range(1, self._config.simulated_units + 1):
            unit_id = f"{self._config.unit_prefix}-{i:02d}"
            token = new_token()
            if not self._accounts.set_unit_token(unit_id, hash_token(token)):
                self._accounts.add_unit(unit_id, "vehicle" if i % 3 == 0 else "body", hash_token(token), time.time())
            units.append((unit_id, token))
        fd = os.open(self._token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(f"{unit_id} {token}\n" for unit_id, token in units)
        return units

    async def start(self, url: str) -> None:
        units = await asyncio.to_thread(self._register)
        logger.info("demo: running %d simulated units: %s", len(units), ", ".join(u for u, _ in units))
        # A session of its own: Ctrl+C in the terminal reaches the server alone, which stops the
        # fleet itself (one SIGTERM, a clean unpublish) instead of both at once.
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "field_client", "--server", url, "--fleet", str(len(units)),
            "--token-file", str(self._token_file), "--auto-ack", stdout=sys.stderr.fileno(),
            start_new_session=True, preexec_fn=_stop_with_parent,
        )

    async def stop(self) -> None:
        """Stop the fleet (it unpublishes cleanly on SIGTERM); kill it if it does not end in time."""
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except asyncio.TimeoutError:
            logger.warning("demo units did not stop within %.0f s; killing them", STOP_TIMEOUT_S)
            proc.kill()
            await proc.wait()

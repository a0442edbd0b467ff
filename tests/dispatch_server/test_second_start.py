"""A second server on a data directory or a port already in use (issue #15, finding 6): one clear
line naming the pid and what is in use, and nothing created."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.processes import clean_env
from tests.support.redis_server import free_port
from tests.support.server import PYTHON, REPO, ServerProcess, write_config


def serve(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "dispatch_server", "--config", str(config), "serve"], capture_output=True,
                          text=True, timeout=60, cwd=REPO, env=clean_env())


def test_a_second_server_stops_with_one_line_and_creates_nothing(tmp_path: Path) -> None:
    port = free_port()
    first_cfg = write_config(tmp_path / "first.toml", tmp_path / "data")
    first_cfg.write_text(first_cfg.read_text().replace("port = 0", f"port = {port}"))
    first = ServerProcess(first_cfg).start()
    try:
        assert first.proc is not None
        same_dir = write_config(tmp_path / "same-dir.toml", tmp_path / "data")  # another port, same data
        out = serve(same_dir)
        assert out.returncode == 2 and out.stdout == ""
        assert out.stderr.strip().count("\n") == 0, out.stderr
        assert f"pid {first.proc.pid}" in out.stderr and str(tmp_path / "data") in out.stderr

        other = write_config(tmp_path / "other.toml", tmp_path / "other-data")
        other.write_text(other.read_text().replace("port = 0", f"port = {port}"))
        out = serve(other)
        assert out.returncode == 2 and out.stderr.strip().count("\n") == 0, out.stderr
        assert f"127.0.0.1:{port} is already in use by pid {first.proc.pid}" in out.stderr
        assert not (tmp_path / "other-data").exists()  # no data directory, no key
    finally:
        first.stop()
    again = ServerProcess(first_cfg).start()  # the lock went with the first server
    again.stop()

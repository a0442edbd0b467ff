"""A real PostgreSQL server started by the tests: ``initdb`` and ``pg_ctl`` from Debian's ``postgresql``
package, as an unprivileged user, in a temporary directory, on a free loopback port.

``initdb`` refuses to run as root: when the suite runs as root (``make test`` in CI), the server runs
as the ``postgres`` user the Debian package creates, in a directory it owns. Each test gets a database
of its own (:meth:`PostgresServer.fresh_database`), so tests never see each other's rows.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

from .orphans import die_with_suite
from .redis_server import free_port


def binary(name: str) -> str:
    """``initdb``/``pg_ctl``/``pg_dump`` on PATH or under Debian's ``/usr/lib/postgresql/<v>/bin``."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True):
        return candidate
    raise RuntimeError(f"{name} is not installed: run 'make test' (it installs postgresql) "
                       "or apt-get install postgresql")


def _as_user(uid: int, gid: int) -> Callable[[], None]:
    die = die_with_suite()

    def become() -> None:
        if die is not None:
            die()
        os.setgid(gid)
        os.setuid(uid)
    return become


class PostgresServer:
    """A PostgreSQL server for the suite; ``url`` is its ``postgres`` database, superuser ``dispatch``."""

    def __init__(self) -> None:
        # Under /tmp, not pytest's (mode 0700, root's) tmp_path: the server's user must reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="dispatch-pg-"))
        self.uid, self.gid = os.getuid(), os.getgid()
        if self.uid == 0:
            user = pwd.getpwnam("postgres")
            self.uid, self.gid = user.pw_uid, user.pw_gid
            os.chown(self.dir, self.uid, self.gid)
        self.port = free_port()
        self.base = f"postgresql://dispatch@127.0.0.1:{self.port}"
        self.url = f"{self.base}/postgres"
        data = self.dir / "data"
        env = {**os.environ, "LC_ALL": "C.UTF-8", "TZ": "UTC"}
        made = subprocess.run([binary("initdb"), "-D", str(data), "-U", "dispatch", "-A", "trust", "-E", "UTF8",
                               "--no-instructions"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              preexec_fn=_as_user(self.uid, self.gid), env=env, cwd=self.dir, timeout=120)
        if made.returncode != 0:
            raise RuntimeError(f"initdb failed ({made.returncode}): {made.stdout[-2000:]}")
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=on "
                   "-c max_connections=300 -c shared_buffers=64MB")
        self.log = self.dir / "server.log"
        self._pg_ctl = [binary("pg_ctl"), "-D", str(data), "-l", str(self.log), "-o", options]
        self._env = env
        self.start()

    def start(self) -> None:
        """Start (again) the server, and wait until it accepts connections."""
        subprocess.run([*self._pg_ctl, "-w", "-t", "120", "start"], check=True, stdout=subprocess.DEVNULL,
                       preexec_fn=_as_user(self.uid, self.gid), env=self._env, cwd=self.dir, timeout=150)
        self._wait_ready()

    def halt(self) -> None:
        """Stop the server at once (``pg_ctl -m immediate``: connections cut, no shutdown checkpoint), keeping
        its data: as a crash or a lost network looks to its clients."""
        subprocess.run([*self._pg_ctl, "-m", "immediate", "-w", "stop"], check=True, stdout=subprocess.DEVNULL,
                       preexec_fn=_as_user(self.uid, self.gid), cwd=self.dir, timeout=60)

    def _wait_ready(self) -> None:
        import psycopg
        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not accept connections on port {self.port}: "
                                       f"{self.log.read_text(errors='replace')[-2000:]}") from None
                time.sleep(0.1)

    def fresh_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg
        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'")
        return f"{self.base}/{name}"

    def stop(self) -> None:
        subprocess.run([*self._pg_ctl, "-m", "fast", "-w", "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, preexec_fn=_as_user(self.uid, self.gid), cwd=self.dir, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)

"""One server per evidence archive and per port, checked before anything is created.

``dispatch-server serve`` first claims what only one process may hold: its evidence archive (a
lock file in the data directory, ``server.pid`` for the default archive ``<data_dir>/archive``,
``server-<16 hex digits of SHA-256 of the archive path>.pid`` for another one, locked with
``flock`` for the life of the process and holding its pid) and its listening socket; only then
does it create the database, the archive or a key. Several nodes may share a data directory, each
with its own ``[archive] dir``. A second server on the same archive, or on a port already taken,
stops with one line naming the pid and what is in use.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import socket
from pathlib import Path

LOCK_FILE = "server.pid"


def lock_path(data_dir: Path, archive_dir: Path | None) -> Path:
    """The lock file of the server writing ``archive_dir`` (None: archive disabled)."""
    if archive_dir is None or archive_dir.resolve() == (data_dir / "archive").resolve():
        return data_dir / LOCK_FILE
    return data_dir / f"server-{hashlib.sha256(str(archive_dir.resolve()).encode()).hexdigest()[:16]}.pid"


class InstanceError(Exception):
    """Another process holds the data directory or the port; the message is one line."""


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"


def running_pid(data_dir: Path, archive_dir: Path | None = None) -> str | None:
    """The pid of the server holding the archive of ``data_dir``, or None when none runs."""
    path = lock_path(data_dir, archive_dir)
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(path)
    finally:
        os.close(fd)
    return None


def listener_pid(port: int) -> int | None:
    """The pid of the process listening on TCP ``port`` (Linux ``/proc``; None if unknown)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None


class Instance:
    """The data directory's lock and the bound listening socket of this server process."""

    def __init__(self, data_dir: Path, lock_fd: int, sock: socket.socket) -> None:
        self.data_dir = data_dir
        self._lock_fd = lock_fd
        self.sock = sock

    @classmethod
    def claim(cls, data_dir: Path, host: str, port: int, archive_dir: Path | None = None) -> Instance:
        """Lock the archive's lock file in ``data_dir`` and bind ``host:port``; :class:`InstanceError`
        if either is taken. Nothing is created unless both are free (then only ``data_dir`` and the
        lock file). Without an archive (``None``: disabled) several nodes may share the data directory."""
        path = lock_path(data_dir, archive_dir)
        fd = -1
        if path.exists():
            fd = os.open(path, os.O_RDWR)
            cls._lock(fd, path, data_dir)
        try:
            sock = cls._bind(host, port)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        try:
            if fd < 0:
                data_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                cls._lock(fd, path, data_dir)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            sock.close()
            if fd >= 0:
                os.close(fd)
            raise
        return cls(data_dir, fd, sock)

    @staticmethod
    def _lock(fd: int, path: Path, data_dir: Path) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InstanceError(f"the data directory {data_dir} is in use by dispatch-server pid {_holder(path)} "
                                f"(its archive); stop that server first, or give this one its own [storage] data_dir "
                                "or [archive] dir") from None

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        try:
            family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                                 flags=socket.AI_PASSIVE)[0]
        except socket.gaierror as exc:
            raise InstanceError(f"server.host {host!r} cannot be resolved: {exc}") from None
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                pid = listener_pid(port)
                who = f" by pid {pid}" if pid is not None else ""
                raise InstanceError(f"{host}:{port} is already in use{who}; stop that server first, or choose "
                                    "another [server] port (--port)") from None
            raise InstanceError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        return sock

    def release(self) -> None:
        """Idempotent: close the socket (if aiohttp has not) and drop the lock."""
        try:
            self.sock.close()
        except OSError:
            pass
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

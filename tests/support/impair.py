"""A lossy mobile link for tests: a network namespace behind a user-space "bump in the wire".

``tc netem`` is the usual tool, but this machine's kernel has no ``sch_netem`` (nor ``fq_codel``
or ``prio``: "Specified qdisc kind is unknown"). Network namespaces and TUN devices do work, so
the impairment is done in user space, on the IP packets themselves:

    processes in namespace lossy-<pid>-<k>          root namespace (the server)
    10.222.N.2 ── TUN lsy..b ══ wire process ══ TUN lsy..a ── 10.222.N.1, and every other local address

The wire process (``python -m tests.support.impair``) owns both TUN devices. It reads every IP
packet leaving one side and writes it to the other after applying, per direction and seeded:
random loss, a delay drawn uniformly from ``delay ± jitter`` (so packets overtake each other, as
with netem's jitter) and, when told to, the loss of every packet of one keyframe (the next RTP
frame of at least ``min_packets`` packets sent for the first time, not a burst of retransmissions;
its packets are all queued by the time the first one is due, because the smallest delay exceeds
the time a burst takes to send). It counts what it did, and what later crossed of a frame it
dropped (retransmissions). With ``lossless_start`` it loses nothing (but still delays) until
:meth:`LossyNetwork.start_loss`, and counts from then on: connection set-up (TCP, ICE, DTLS, whose
retransmission timers back off to seconds) is then quick, when a test measures only the media.
The namespace's default route is the TUN device, so everything a process in it sends to any
address of this machine (ICE host candidates included) crosses the wire.

:class:`LossyNetwork` sets it all up and tears it down; namespaces left by a crashed run (their
creator's pid is gone) are removed by the next one. Control is one JSON command per line on the
wire's stdin, one JSON answer per line on its stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .orphans import die_with_suite
from .processes import REPO, Process, assert_clean, clean_env

NS_PREFIX = "lossy-"
SUBNET_PREFIX = "10.222"
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
DIRECTIONS = ("up", "down")  # up: namespace -> root (publisher to server); down: root -> namespace


@dataclass(frozen=True)
class Impairment:
    """What each direction of the wire does to packets (netem's ``loss 5% delay 80ms 40ms``)."""

    loss: float = 0.05
    delay_s: float = 0.080
    jitter_s: float = 0.040
    seed: int = 16

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss < 1.0 or self.jitter_s < 0 or self.delay_s < self.jitter_s:
            raise ValueError(f"impossible impairment {self}")


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", "netns", "exec", ns, "ip", *args] if ns else ["ip", *args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {out.stderr.strip()}")
    return out


def remove_stale_namespaces() -> list[str]:
    """Delete namespaces this module made in runs whose process is gone (a crashed suite)."""
    removed = []
    for line in _ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(NS_PREFIX):
            continue
        try:
            pid = int(name[len(NS_PREFIX):].split("-")[0])
        except ValueError:
            continue  # not one of ours
        try:
            os.kill(pid, 0)
            continue  # its creator still runs
        except ProcessLookupError:
            pass
        _ip("netns", "delete", name, check=False)
        removed.append(name)
    return removed


def _free_subnet() -> int:
    used = _ip("-4", "-o", "addr").stdout
    for n in range(1, 255):
        if f" {SUBNET_PREFIX}.{n}." not in used:
            return n
    raise RuntimeError(f"no free {SUBNET_PREFIX}.N.0/24 for a lossy network")


_instances = 0


@dataclass
class LossyNetwork:
    """A namespace whose processes reach this machine only through an impaired wire.

    ``host_ip`` is the root namespace's end (bind a server there), ``peer_ip`` the namespace's.
    Use as ``async with LossyNetwork(Impairment()) as net:``; :meth:`run` starts a process inside.
    """

    impairment: Impairment = field(default_factory=Impairment)
    lossless_start: bool = False
    name: str = ""
    host_ip: str = ""
    peer_ip: str = ""
    _wire: asyncio.subprocess.Process | None = None
    _wire_log: list[str] = field(default_factory=list)
    _wire_err: asyncio.Task[None] | None = None
    _processes: list[Process] = field(default_factory=list)

    async def __aenter__(self) -> LossyNetwork:
        global _instances
        _instances += 1
        remove_stale_namespaces()
        self.name = f"{NS_PREFIX}{os.getpid()}-{_instances}"
        # Test processes running side by side (several suites on one machine) must not pick the same
        # free subnet: the choice is locked until this wire has put its addresses on its devices.
        lock = os.open(os.path.join(tempfile.gettempdir(), "lossy-network-subnets.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
            await self._start_wire()
        finally:
            os.close(lock)  # and with it the lock
        return self

    async def _start_wire(self) -> None:
        n = _free_subnet()
        self.host_ip, self.peer_ip = f"{SUBNET_PREFIX}.{n}.1", f"{SUBNET_PREFIX}.{n}.2"
        tun = f"lsy{os.getpid() % 100000}{_instances % 100}"
        _ip("netns", "add", self.name)
        try:
            imp = self.impairment
            self._wire = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.support.impair", "--ns", self.name, "--tun", tun,
                "--host-ip", self.host_ip, "--peer-ip", self.peer_ip, "--loss", str(imp.loss),
                "--delay", str(imp.delay_s), "--jitter", str(imp.jitter_s), "--seed", str(imp.seed),
                *(["--lossless-start"] if self.lossless_start else []),
                cwd=REPO, env=clean_env(), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, preexec_fn=die_with_suite(),
            )
            self._wire_err = asyncio.create_task(self._collect_stderr())
            ready = await self._answer(timeout=30)
            assert ready.get("ready"), ready
        except BaseException:
            await self.close()
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _collect_stderr(self) -> None:
        assert self._wire is not None and self._wire.stderr is not None
        async for raw in self._wire.stderr:
            self._wire_log.append(raw.decode(errors="replace").rstrip("\n"))

    async def _answer(self, timeout: float) -> dict[str, Any]:
        assert self._wire is not None and self._wire.stdout is not None
        async with asyncio.timeout(timeout):
            line = await self._wire.stdout.readline()
        if not line:
            raise RuntimeError("the wire process ended:\n" + "\n".join(self._wire_log[-40:]))
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def command(self, cmd: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        """Send the wire a command: ``{"cmd": "stats"}``, ``{"cmd": "start_loss"}``, or ``{"cmd": "drop_keyframe",
        "direction": "up"|"down", "min_packets": N, "not_before": T}`` (answered at once; the drop
        shows in stats; T: the frame's first packet arrives at or after monotonic time T)."""
        assert self._wire is not None and self._wire.stdin is not None
        self._wire.stdin.write((json.dumps(cmd) + "\n").encode())
        await self._wire.stdin.drain()
        return await self._answer(timeout)

    async def stats(self) -> dict[str, Any]:
        return await self.command({"cmd": "stats"})

    async def start_loss(self) -> None:
        """After a lossless start: lose packets from now on, and count from now on."""
        answer = await self.command({"cmd": "start_loss"})
        assert answer.get("ok"), answer

    async def run(self, *args: str, env: dict[str, str] | None = None) -> Process:
        """``python ARGS...`` inside the namespace (its output collected and checked as any
        process's); ``env`` is added to the test's environment (secrets go there, not in ARGS)."""
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", self.name, sys.executable, *args, cwd=REPO, env=clean_env(**(env or {})),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            preexec_fn=die_with_suite(),
        )
        process = Process(proc, " ".join(a for a in args if not a.startswith("-"))[:60])
        self._processes.append(process)
        return process

    async def close(self) -> None:
        """Stop the processes inside, the wire (its TUN devices vanish with it), delete the namespace."""
        for process in self._processes:
            await process.stop(check=False)
        self._processes.clear()
        if self._wire is not None and self._wire.returncode is None:
            assert self._wire.stdin is not None
            self._wire.stdin.close()  # the wire's command loop ends, it closes its TUN devices
            try:
                async with asyncio.timeout(10):
                    await self._wire.wait()
            except TimeoutError:
                self._wire.kill()
                await self._wire.wait()
        if self._wire_err is not None:
            await self._wire_err
            self._wire_err = None
        if self.name:
            _ip("netns", "delete", self.name, check=False)
        assert_clean("\n".join(self._wire_log), "impairment wire")


# --- the wire process -----------------------------------------------------------------------

def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def rtp_frame_key(packet: bytes) -> tuple[int, int] | None:
    """(SSRC, RTP timestamp) of an IPv4/IPv6 UDP packet carrying RTP (not RTCP, STUN or DTLS);
    SRTP leaves the RTP header in the clear."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4:
        if len(packet) < 20 or packet[9] != 17:
            return None
        start = (packet[0] & 0x0F) * 4 + 8
    elif version == 6:
        if len(packet) < 48 or packet[6] != 17:
            return None
        start = 48
    else:
        return None
    rtp = packet[start:start + 12]
    if len(rtp) < 12 or rtp[0] >> 6 != 2 or 192 <= rtp[1] <= 223:
        return None
    return struct.unpack("!I", rtp[8:12])[0], struct.unpack("!I", rtp[4:8])[0]


@dataclass
class _Queued:
    packet: bytes
    index: int  # arrival order in its direction
    key: tuple[int, int] | None
    arrived: float
    alive: bool = True


@dataclass
class _Frame:
    first_arrival: float
    queued: list[_Queued] = field(default_factory=list)
    released: int = 0


@dataclass
class DirectionStats:
    packets: int = 0
    lost: int = 0  # random loss
    delivered: int = 0
    reordered: int = 0  # delivered after a packet that arrived later than it
    keyframe_dropped: int = 0  # packets dropped on purpose
    keyframes: list[dict[str, Any]] = field(default_factory=list)  # the frames dropped on purpose
    # Seconds delivered packets spent in the wire, as measured (the event loop's lateness included).
    delay_min_s: float | None = None
    delay_median_s: float | None = None
    delay_max_s: float | None = None


class Direction:
    """One direction of the wire: reads from ``src``, writes to ``dst``."""

    def __init__(self, name: str, src: int, dst: int, imp: Impairment, seed: int, losing: bool = True) -> None:
        self.name = name
        self.losing = losing
        self.src = src
        self.dst = dst
        self.imp = imp
        self.rng = random.Random(seed)
        self.stats = DirectionStats()
        self.frames: dict[tuple[int, int], _Frame] = {}
        self.drop_order: int | None = None  # min_packets of the next frame to drop whole
        self.drop_not_before = 0.0  # ... whose first packet arrived at or after this (monotonic)
        self._arrivals = 0
        self._max_released = 0
        self._dropped_timestamps: dict[int, dict[str, Any]] = {}
        self._delays: list[float] = []
        self._ts_first: dict[int, tuple[int, float]] = {}  # RTP timestamp -> (SSRC, time) first seen
        self._pruned = time.monotonic()
        self._loop = asyncio.get_running_loop()

    def readable(self) -> None:
        while True:
            try:
                packet = os.read(self.src, 65535)
            except BlockingIOError:
                return
            self.stats.packets += 1
            self._arrivals += 1
            key = rtp_frame_key(packet)
            lost = self.rng.random() < self.imp.loss and self.losing
            if key is not None and key[1] in self._dropped_timestamps:
                # A retransmission of a frame dropped on purpose (RTX keeps the RTP timestamp).
                self._dropped_timestamps[key[1]]["later"].append(
                    [round(time.monotonic() - self._dropped_timestamps[key[1]]["dropped_at"], 4), lost])
            if key is not None and key[1] not in self._ts_first:
                self._ts_first[key[1]] = (key[0], time.monotonic())
            if lost:
                self.stats.lost += 1
                continue
            entry = _Queued(packet, self._arrivals, key, time.monotonic())
            if entry.key is not None:
                frame = self.frames.get(entry.key)
                if frame is None:
                    frame = self.frames[entry.key] = _Frame(time.monotonic())
                frame.queued.append(entry)
            delay = self.imp.delay_s + self.rng.uniform(-self.imp.jitter_s, self.imp.jitter_s)
            self._loop.call_later(delay, self._release, entry)

    def _release(self, entry: _Queued) -> None:
        frame = self.frames.get(entry.key) if entry.key is not None else None
        if frame is not None:
            frame.queued.remove(entry)
        if not entry.alive:
            return
        if frame is not None and self.drop_order is not None and frame.released == 0 \
                and len(frame.queued) + 1 >= self.drop_order and frame.first_arrival >= self.drop_not_before \
                and self._is_original(entry.key):
            doomed = [entry, *frame.queued]
            for e in doomed:
                e.alive = False
            assert entry.key is not None
            self.stats.keyframe_dropped += len(doomed)
            dropped = {"ssrc": entry.key[0], "timestamp": entry.key[1], "packets": len(doomed),
                       "first_arrival": frame.first_arrival, "dropped_at": time.monotonic(),
                       "later": []}  # [seconds after the drop, lost] of each later packet of that frame
            self.stats.keyframes.append(dropped)
            self._dropped_timestamps[entry.key[1]] = dropped
            self.drop_order = None
            return
        if frame is not None:
            frame.released += 1
        try:
            os.write(self.dst, entry.packet)
        except OSError:
            return  # the other side is down (interface not up yet, or going away)
        self.stats.delivered += 1
        self._delays.append(time.monotonic() - entry.arrived)
        if entry.index < self._max_released:
            self.stats.reordered += 1
        else:
            self._max_released = entry.index
        self._prune()

    def _is_original(self, key: tuple[int, int] | None) -> bool:
        """Whether a frame is sent for the first time: its timestamp was new on its own SSRC. A
        burst of RTX retransmissions shares an earlier frame's timestamp and is no frame."""
        return key is not None and self._ts_first.get(key[1], (None, 0.0))[0] == key[0]

    def start_loss(self) -> None:
        """Lose packets from now on; the statistics start again."""
        self.losing = True
        self.stats = DirectionStats()
        self._delays.clear()

    def report(self) -> dict[str, Any]:
        if self._delays:
            delays = sorted(self._delays)
            self.stats.delay_min_s = round(delays[0], 4)
            self.stats.delay_median_s = round(delays[len(delays) // 2], 4)
            self.stats.delay_max_s = round(delays[-1], 4)
        return asdict(self.stats)

    def _prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned < 1.0:
            return
        self._pruned = now
        for key in [k for k, f in self.frames.items() if not f.queued and now - f.first_arrival > 2.0]:
            del self.frames[key]
        for ts in [t for t, (_, seen) in self._ts_first.items() if now - seen > 10.0]:
            del self._ts_first[ts]


async def _serve(args: argparse.Namespace) -> None:
    imp = Impairment(args.loss, args.delay, args.jitter, args.seed)
    host_tun, peer_tun = f"{args.tun}a", f"{args.tun}b"
    host_fd, peer_fd = _open_tun(host_tun), _open_tun(peer_tun)
    _ip("link", "set", peer_tun, "netns", args.ns)
    _ip("addr", "add", args.host_ip, "peer", args.peer_ip, "dev", host_tun)
    _ip("link", "set", host_tun, "up")
    _ip("link", "set", "lo", "up", ns=args.ns)
    _ip("addr", "add", args.peer_ip, "peer", args.host_ip, "dev", peer_tun, ns=args.ns)
    _ip("link", "set", peer_tun, "up", ns=args.ns)
    _ip("route", "add", "default", "dev", peer_tun, ns=args.ns)
    loop = asyncio.get_running_loop()
    losing = not args.lossless_start
    directions = {"up": Direction("up", peer_fd, host_fd, imp, args.seed * 2, losing),
                  "down": Direction("down", host_fd, peer_fd, imp, args.seed * 2 + 1, losing)}
    for d in directions.values():
        loop.add_reader(d.src, d.readable)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    reply({"ready": True})
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd.get("cmd") == "stats":
            reply({"ok": True, **{name: d.report() for name, d in directions.items()}})
        elif cmd.get("cmd") == "start_loss":
            for d in directions.values():
                d.start_loss()
            reply({"ok": True})
        elif cmd.get("cmd") == "drop_keyframe" and cmd.get("direction") in directions:
            direction = directions[cmd["direction"]]
            direction.drop_order = int(cmd.get("min_packets", 10))
            direction.drop_not_before = float(cmd.get("not_before", 0.0))
            reply({"ok": True})
        else:
            reply({"ok": False, "error": f"unknown command {cmd!r}"})
    for d in directions.values():
        loop.remove_reader(d.src)
    os.close(host_fd)
    os.close(peer_fd)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.impair")
    parser.add_argument("--ns", required=True)
    parser.add_argument("--tun", required=True, help="TUN name stem: STEMa in the root namespace, STEMb in NS")
    parser.add_argument("--host-ip", required=True)
    parser.add_argument("--peer-ip", required=True)
    parser.add_argument("--loss", type=float, default=0.05)
    parser.add_argument("--delay", type=float, default=0.080)
    parser.add_argument("--jitter", type=float, default=0.040)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--lossless-start", action="store_true", help="lose nothing until the start_loss command")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

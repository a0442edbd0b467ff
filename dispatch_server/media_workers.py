"""Media worker processes, one per core (``[media] workers``): the front's side.

The front (the HTTP and Socket.IO process) starts ``workers`` child processes
(``dispatch-server media-worker``, :mod:`dispatch_server.media_worker`) and hands each unit's media
to one of them: a unit's publisher, its viewers and its talk-back all live on the same worker,
chosen when the unit has no session anywhere (the worker with the fewest units) and kept while it
has one. The peer connection's ICE, DTLS and UDP go straight to the worker: its answer carries its
own candidates. WHIP, WHEP and talk requests are received by the front whatever the worker and
passed on over HTTP on 127.0.0.1, guarded by a per-boot secret.

Recordings and the ledger keep one writer, the front's archive: the worker sends the frames of the
units the archive taps over one event stream, and :class:`RemoteChannel` hands them to the taps as
a local channel would (``recordings.source.FrameSource``).

A worker that dies (its event stream closes) is restarted with capped exponential backoff; its
sessions end at once with the reason ``media worker died``, which the live path records as the
gap cause ``worker_restarted``. Units publish again by themselves when their peer connection fails
(the worker's UDP is gone), and land on a live worker. Viewers without a worker-hosted unit (a
unit pulled from another node, :mod:`dispatch_server.pulls`) stay in the front's own relay.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import aiohttp
import msgpack

from media.errors import CodecMismatch, SdpError
from recordings.source import FrameTap

from .errors import Unavailable
from .live import WORKER_DIED
from .media_host import LocalMediaHost, OnEnd

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0  # a worker has this long to say where it listens
FIRST_RESTART_S = 0.25
MAX_RESTART_S = 5.0
STABLE_S = 30.0  # a worker that ran this long restarts at once again after its next death
REQUEST_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 3.0  # a stopping worker has this long to close its event stream, and again to exit
SECRET_HEADER = "X-Worker-Secret"
EARLY_ENDS_KEPT = 256


@dataclass(frozen=True)
class RemoteFrame:
    """A frame received from a worker, as a tap takes it (``recordings.source.EncodedFrame``)."""

    pts: int
    data: bytes

    def __bytes__(self) -> bytes:
        return self.data


class RemoteChannel:
    """A unit's frames in the front, fed by the worker its media lives on (``FrameSource``)."""

    def __init__(self, unit_id: str) -> None:
        self.unit_id = unit_id
        self.worker: WorkerProcess | None = None
        self._taps: dict[str, list[FrameTap]] = {"video": [], "audio": []}
        self.frames_in = 0

    @property
    def tapped(self) -> bool:
        return any(self._taps.values())

    def add_tap(self, kind: str, tap: FrameTap) -> None:
        was = self.tapped
        self._taps[kind].append(tap)
        if not was and self.worker is not None:
            self.worker.send({"t": "tap", "u": self.unit_id, "on": True})

    def remove_tap(self, kind: str, tap: FrameTap) -> None:
        if tap in self._taps[kind]:
            self._taps[kind].remove(tap)
            if not self.tapped and self.worker is not None:
                self.worker.send({"t": "tap", "u": self.unit_id, "on": False})

    def request_keyframe(self, reason: str) -> None:
        if self.worker is not None:
            self.worker.send({"t": "kf", "u": self.unit_id, "reason": reason})

    def moved_to(self, worker: WorkerProcess) -> None:
        """The unit publishes on ``worker`` now."""
        self.worker = worker
        if self.tapped:
            worker.send({"t": "tap", "u": self.unit_id, "on": True})

    def deliver(self, kind: str, pts: int, keyframe: bool, data: bytes) -> None:
        self.frames_in += 1
        frame = RemoteFrame(pts, data)
        for tap in tuple(self._taps.get(kind, ())):
            tap(frame, keyframe)


class RemoteSession:
    """A publisher or viewer session living in a worker, as the live path and talk-back see it."""

    pc = None  # the peer connection is in the worker

    def __init__(self, worker: WorkerProcess, session_id: str, unit_id: str, on_end: OnEnd, *, viewer: str = "",
                 codecs: dict[str, str] | None = None, channel: RemoteChannel | None = None) -> None:
        self.worker = worker
        self.id = session_id
        self.unit_id = unit_id
        self.viewer = viewer
        self.codecs = codecs or {}
        self.channel = channel if channel is not None else RemoteChannel(unit_id)
        self.ended_reason: str | None = None
        self.silence_s = 0.0  # as the worker last reported it
        self.counts: tuple[int, int] | None = None  # (lost, received) RTP packets, as the worker last reported them
        self._on_end = on_end

    def media_silence_s(self) -> float:
        return self.silence_s

    async def packet_counts(self) -> tuple[int, int] | None:
        return self.counts

    async def close(self, reason: str = "closed", settle_s: float = 0.0) -> None:
        """End the session in its worker (if the worker still runs), then tell the owner. Idempotent.
        ``settle_s``: as :meth:`media.session.PublisherSession.close`, in the worker."""
        if self.ended_reason is not None:
            return
        self.ended_reason = reason
        self.worker.sessions.pop(self.id, None)
        try:
            await self.worker.post("/close", {"session": self.id, "reason": reason, "settle_s": settle_s})
        except Unavailable as exc:  # the worker is gone, and the session with it
            logger.info("unit %s: session %s: %s", self.unit_id, self.id, exc.message)
        self._on_end(self, reason)

    def ended(self, reason: str) -> None:
        """The worker ended the session (or died)."""
        if self.ended_reason is not None:
            return
        self.ended_reason = reason
        self.worker.sessions.pop(self.id, None)
        logger.info("unit %s: session %s on media worker %d ended: %s", self.unit_id, self.id, self.worker.index,
                    reason)
        self._on_end(self, reason)


class WorkerProcess:
    """One worker: its process, address, event stream and sessions (the current incarnation's)."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.secret = ""
        self.base_url = ""
        self.pid: int | None = None
        self.ready = asyncio.Event()
        self.sessions: dict[str, RemoteSession] = {}
        self.starts = 0
        # Sessions the worker ended before the front knew them (the event overtook the answer).
        self.early_ends: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._http: aiohttp.ClientSession | None = None
        # Relay counters: this incarnation's as last reported, plus those of incarnations that died.
        self.counters: dict[str, dict[str, int]] = {}
        self.carried: dict[str, dict[str, int]] = {}

    def units(self) -> set[str]:
        return {s.unit_id for s in self.sessions.values()}

    def adopt(self, session: RemoteSession, incarnation: int) -> None:
        """Register a session the worker answered. :class:`Unavailable` if the worker died meanwhile
        (``incarnation``: its ``starts`` when the request went out) or has already ended it."""
        if self.starts != incarnation or not self.ready.is_set():
            raise Unavailable(f"media worker {self.index} died while answering; try again",
                              code="media_worker_down")
        early = self.early_ends.pop(session.id, None)
        if early is not None:
            raise Unavailable(f"the session ended at once on media worker {self.index}: {early}",
                              code="media_worker_down")
        self.sessions[session.id] = session

    def send(self, message: dict[str, Any]) -> None:
        if self.ready.is_set():
            self._outbox.put_nowait(message)

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A request to the worker: its JSON answer; :class:`SdpError`/:class:`CodecMismatch` for an
        offer it refused, :class:`Unavailable` when it cannot be reached."""
        if not self.ready.is_set() or self._http is None:
            raise Unavailable(f"media worker {self.index} is restarting; try again", code="media_worker_down")
        try:
            async with self._http.post(self.base_url + path, json=body, headers={SECRET_HEADER: self.secret},
                                       timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as resp:
                answer = await resp.json()
                if resp.status == 400:
                    error = answer.get("error", {})
                    cls = CodecMismatch if error.get("code") == "codec_mismatch" else SdpError
                    raise cls(str(error.get("message", "offer refused")))
                if resp.status != 200:
                    raise Unavailable(f"media worker {self.index} answered {resp.status}", code="media_worker_down")
                return dict(answer)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Unavailable(f"media worker {self.index} unreachable: {exc.__class__.__name__}: {exc}",
                              code="media_worker_down") from exc


class MediaWorkers:
    """The front's media host when ``[media] workers`` > 0 (:class:`~dispatch_server.media_host.MediaHost`)."""

    def __init__(self, count: int, command: Sequence[str], boot: dict[str, Any], local: LocalMediaHost) -> None:
        self._command = list(command)
        self._boot = boot  # what every worker reads on its standard input (plus its secret and index)
        self._local = local
        self.relay = local.relay
        self.workers = [WorkerProcess(i) for i in range(count)]
        self.channels: dict[str, RemoteChannel] = {}
        self._assigned: dict[str, WorkerProcess] = {}  # unit -> the worker its sessions live on
        self._opening: collections.Counter[str] = collections.Counter()  # unit -> requests opening a session
        self._tasks: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None
        self._closing = False
        self.restarts = 0
        self._first_frames: list[float] = []

    def counters(self) -> dict[str, dict[str, int]]:
        total = self.relay.counters()
        for worker in self.workers:
            total = _add(_add(total, worker.carried), worker.counters)
        return total

    def take_first_frames(self) -> list[float]:
        out, self._first_frames = self._first_frames + self.relay.take_first_frames(), []
        return out

    # the host interface ------------------------------------------------------------------
    async def publish(self, unit_id: str, channel_id: str, offer_sdp: str, timeout_s: float,
                      on_end: OnEnd) -> tuple[RemoteSession, str]:
        worker = self._worker_for(unit_id)
        incarnation = worker.starts
        channel = self.channels.setdefault(unit_id, RemoteChannel(unit_id)) if channel_id == unit_id else None
        with self._opening_on(unit_id, worker):
            out = await worker.post("/publish", {"unit": unit_id, "channel": channel_id, "offer": offer_sdp,
                                                 "timeout_s": timeout_s})
            session = RemoteSession(worker, str(out["session"]), unit_id, self._ended(on_end),
                                    codecs=dict(out["codecs"]), channel=channel)
            worker.adopt(session, incarnation)
        if channel is not None:
            channel.moved_to(worker)
        logger.info("unit %s: %s session %s on media worker %d (pid %s)", unit_id,
                    "publishing" if channel is not None else f"{channel_id} publisher", session.id, worker.index,
                    worker.pid)
        return session, str(out["answer"])

    async def watch(self, unit_id: str, channel_id: str, offer_sdp: str, on_end: OnEnd,
                    viewer: str) -> tuple[Any, str]:
        worker = self._assigned.get(unit_id)
        if worker is None or (unit_id not in worker.units() and unit_id not in self._opening):
            if channel_id == unit_id:  # no worker has the unit: a pull from another node feeds this process
                return await self._local.watch(unit_id, channel_id, offer_sdp, on_end, viewer)
            worker = self._worker_for(unit_id)
        incarnation = worker.starts
        with self._opening_on(unit_id, worker):
            out = await worker.post("/watch", {"unit": unit_id, "channel": channel_id, "offer": offer_sdp,
                                               "viewer": viewer})
            session = RemoteSession(worker, str(out["session"]), unit_id, self._ended(on_end), viewer=viewer)
            worker.adopt(session, incarnation)
        return session, str(out["answer"])

    def _worker_for(self, unit_id: str) -> WorkerProcess:
        """The unit's worker: the one it is assigned to (it has sessions there, or one is being
        opened), else the running worker with fewest units, which it is assigned to now."""
        current = self._assigned.get(unit_id)
        if current is not None and current.ready.is_set():
            return current
        running = [w for w in self.workers if w.ready.is_set()]
        if not running:
            raise Unavailable("no media worker is running; try again", code="media_worker_down")
        load = {w.index: 0 for w in running}
        for w in self._assigned.values():
            if w.index in load:
                load[w.index] += 1
        chosen = min(running, key=lambda w: (load[w.index], w.index))
        self._assigned[unit_id] = chosen
        return chosen

    @contextlib.contextmanager
    def _opening_on(self, unit_id: str, worker: WorkerProcess) -> Iterator[None]:
        """While a request opens a session of the unit on ``worker``; afterwards (adopted, or
        failed) the unit is released unless it has sessions or other requests there."""
        self._opening[unit_id] += 1
        try:
            yield
        finally:
            self._opening[unit_id] -= 1
            if not self._opening[unit_id]:
                del self._opening[unit_id]
            self.release(unit_id, worker)

    def release(self, unit_id: str, worker: WorkerProcess) -> None:
        """The unit has no session on ``worker`` any more, nor one being opened (its first one
        failed, say): unassign it. A request still in flight keeps the assignment, so that a
        publish that fails while a viewer's request is under way does not let the next publish
        land on another worker than that viewer."""
        if self._assigned.get(unit_id) is worker and unit_id not in worker.units() and unit_id not in self._opening:
            del self._assigned[unit_id]

    def _ended(self, on_end: OnEnd) -> OnEnd:
        """``on_end`` after releasing the unit's assignment when this was its last session there."""
        def ended(session: RemoteSession, reason: str) -> None:
            self.release(session.unit_id, session.worker)
            on_end(session, reason)

        return ended

    # lifetime ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every worker and wait until each listens (``START_TIMEOUT_S``)."""
        await self._local.start()
        self._http = aiohttp.ClientSession()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._supervise(w), name=f"media-worker-{w.index}") for w in self.workers]
        try:
            await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in self.workers)), START_TIMEOUT_S)
        except TimeoutError:
            await self.close()
            raise RuntimeError(f"media workers did not start within {START_TIMEOUT_S:g} s") from None
        logger.info("%d media workers running (pids %s)", len(self.workers), [w.pid for w in self.workers])

    async def _supervise(self, worker: WorkerProcess) -> None:
        delay = FIRST_RESTART_S
        while not self._closing:
            started = time.monotonic()
            reason = "?"
            try:
                reason = await self._run(worker)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = f"{exc.__class__.__name__}: {exc}"
                logger.exception("media worker %d failed", worker.index)
            finally:
                self._died(worker)
            if self._closing:
                return
            if time.monotonic() - started > STABLE_S:
                delay = FIRST_RESTART_S
            self.restarts += 1
            logger.warning("media worker %d died (%s); restarting in %.2f s", worker.index, reason, delay)
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, MAX_RESTART_S)

    async def _run(self, worker: WorkerProcess) -> str:
        """One incarnation of ``worker``: start it, follow its events; why it ended."""
        assert self._http is not None
        worker.secret = secrets.token_urlsafe(24)
        proc = await asyncio.create_subprocess_exec(*self._command, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE)
        worker.pid = proc.pid
        worker.starts += 1
        sender: asyncio.Task[None] | None = None
        ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps({**self._boot, "secret": worker.secret, "index": worker.index}).encode()
                             + b"\n")
            await proc.stdin.drain()
            line = (await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT_S)).decode().strip()
            if " listening on " not in line:
                return f"it said {line!r} instead of where it listens"
            worker.base_url = line.rsplit(" ", 1)[1]
            ws = await self._http.ws_connect(worker.base_url + "/events", headers={SECRET_HEADER: worker.secret},
                                             max_msg_size=0)
            worker._http = self._http
            worker._outbox = asyncio.Queue()
            worker.ready.set()
            logger.info("media worker %d (pid %d) ready at %s", worker.index, proc.pid, worker.base_url)

            async def send() -> None:
                while True:
                    await ws.send_bytes(msgpack.packb(await worker._outbox.get()))

            sender = asyncio.get_running_loop().create_task(send(), name=f"media-worker-{worker.index}-send")
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    for event in msgpack.unpackb(msg.data):  # a batch (media_worker.MediaWorker.next_batch)
                        self._event(worker, event)
            return f"its event stream closed (exit code {proc.returncode})"
        finally:
            worker.ready.clear()
            if sender is not None:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            if ws is not None and not ws.closed:
                # First the event stream: the worker's web server waits for it before it exits.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), STOP_TIMEOUT_S)
            if proc.returncode is None:
                if proc.stdin is not None:
                    proc.stdin.close()  # a worker ends when its front's pipe closes
                try:
                    await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
                except TimeoutError:
                    logger.warning("media worker %d (pid %s) did not stop within %g s; killed", worker.index,
                                   proc.pid, STOP_TIMEOUT_S)
                    proc.kill()
                    await proc.wait()

    def _event(self, worker: WorkerProcess, event: dict[str, Any]) -> None:
        kind = event.get("t")
        if kind == "f":
            channel = self.channels.get(event["u"])
            if channel is not None and channel.worker is worker:
                channel.deliver(event["k"], event["p"], event["key"], event["d"])
        elif kind == "counters":
            worker.counters = event["c"]
            self._first_frames.extend(float(x) for x in event["ff"])
        elif kind == "silence":
            for session_id, seconds in event["s"].items():
                session = worker.sessions.get(session_id)
                if session is not None:
                    session.silence_s = float(seconds)
            for session_id, (lost, received) in event.get("pc", {}).items():
                session = worker.sessions.get(session_id)
                if session is not None:
                    session.counts = (int(lost), int(received))
        elif kind == "ended":
            session = worker.sessions.get(event["session"])
            if session is not None:
                session.ended(str(event["reason"]))
            else:
                worker.early_ends[str(event["session"])] = str(event["reason"])
                while len(worker.early_ends) > EARLY_ENDS_KEPT:
                    worker.early_ends.popitem(last=False)

    def _died(self, worker: WorkerProcess) -> None:
        """End every session of a worker that is gone (its media went with it)."""
        sessions = list(worker.sessions.values())
        for unit_id in [u for u, w in self._assigned.items() if w is worker]:
            del self._assigned[unit_id]
        for channel in self.channels.values():
            if channel.worker is worker:
                channel.worker = None
        for session in sessions:
            session.ended(f"{WORKER_DIED} (worker {worker.index})" if not self._closing else "server shutting down")
        worker.sessions.clear()
        worker.carried = _add(worker.carried, worker.counters)  # counters stay cumulative across restarts
        worker.counters = {}

    async def close(self) -> None:
        """Stop every worker (each ends its own sessions), then the front's own relay. Idempotent."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._http is not None:
            await self._http.close()
            self._http = None
        await self._local.close()


def _add(a: dict[str, dict[str, int]], b: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Counters by kind and name, summed."""
    out = {kind: dict(names) for kind, names in a.items()}
    for kind, names in b.items():
        row = out.setdefault(kind, {})
        for name, value in names.items():
            row[name] = row.get(name, 0) + int(value)
    return out

"""Running the app: bind, announce the address, drain on the first signal, force on the second."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from aiortc.exceptions import InvalidStateError

from . import malloc_arenas
from .app import create_app, create_worker_app
from .appkeys import ACCOUNTS, AUTH, STOPPING
from .config import LogConfig, MediaConfig, Settings, describe, section
from .demo import DemoUnits
from .http.connection_guard import GuardedRunner
from .instance import Instance
from .log_format import configure_logging
from .node import advertised

logger = logging.getLogger(__name__)

INITIAL_PASSWORD_FILE = "initial-admin-password"


def ensure_admin(app: web.Application, settings: Settings) -> str | None:
    """On a fresh data directory create ``admin`` with a random password kept in a 0600 file.

    Returns the password while that file exists (so ``make run`` can say how to log in).
    """
    accounts = app[ACCOUNTS]
    path = settings.data_dir / INITIAL_PASSWORD_FILE
    if accounts.count_users() == 0:
        password = secrets.token_urlsafe(12)
        accounts.add_user("admin", "admin", app[AUTH].hash_password(password), time.time())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        return password
    if path.is_file():
        return path.read_text().strip()
    return None


GC_THRESHOLDS = (50_000, 20, 100)


async def serve(settings: Settings, instance: Instance) -> int:
    """Run until SIGINT/SIGTERM. The first signal drains for ``server.shutdown_grace_s``, a second one forces.
    ``instance`` holds the data directory's lock and the bound listening socket."""
    # The server allocates many short-lived objects per event (1 Hz positions from every unit):
    # with the default thresholds the cyclic collector took 25-45% of the server's time at 1,500
    # units, in pauses of 200-700 ms. Collecting young objects less often cut that to a fraction
    # (docs/benchmarks.md, Geo).
    gc.set_threshold(GC_THRESHOLDS[0], GC_THRESHOLDS[1], GC_THRESHOLDS[2])
    asyncio.get_running_loop().set_exception_handler(_closed_while_connecting)  # media may live here too
    settings = advertised(settings, instance.sock.getsockname())
    app = create_app(settings)
    # After the shutdown hooks closed every websocket, aiohttp waits this long for request
    # handlers still running (a download, a closing handshake) before it cancels them and closes
    # the parts of the app: the archive must seal within server.shutdown_grace_s.
    handler_grace = min(1.0, settings.server.shutdown_grace_s / 4)
    runner = GuardedRunner(app, handle_signals=False, access_log=None,  # head/body deadlines, per-address cap
                           shutdown_timeout=handler_grace)
    try:
        await runner.setup()
        site = web.SockSite(runner, instance.sock)
        await site.start()
    except OSError as exc:  # a port in use, an address not on this host
        await runner.cleanup()  # closes exactly the parts that had started
        logger.error("cannot start: %s", exc)
        return 2
    except BaseException:
        await runner.cleanup()
        raise
    addresses = runner.addresses  # where the listening socket is bound (port 0 picks a free one)
    port = addresses[0][1] if addresses else settings.server.port
    url = f"http://{settings.server.host}:{port}"
    logger.info("configuration:\n%s", describe(settings))
    loop_type = type(asyncio.get_running_loop())
    logger.info("event loop: %s.%s", loop_type.__module__, loop_type.__name__)
    password = ensure_admin(app, settings)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            logger.info("shutting down: draining sessions (send the signal again to force)")
            stop.set()
        else:
            logger.warning("second signal: forcing exit")
            os._exit(1)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    demo: DemoUnits | None = None
    if settings.demo.simulated_units > 0:
        demo = DemoUnits(app[ACCOUNTS], settings.demo, settings.data_dir)
        await demo.start(url)

    print(f"dispatch-server listening on {url}", flush=True)
    print(f"  operator console: {url}/   field page: {url}/field", flush=True)
    if password:
        print(f"  log in as 'admin' with password '{password}' "
              f"(kept in {Path(settings.data_dir) / INITIAL_PASSWORD_FILE} until you delete it)", flush=True)
    try:
        await stop.wait()
    finally:
        t0 = loop.time()
        grace = settings.server.shutdown_grace_s
        await app[STOPPING].begin()  # units and consoles hear of the restart; no offline alarms
        if demo is not None:
            await demo.stop()
        try:
            await asyncio.wait_for(runner.cleanup(), timeout=max(0.1, grace - (loop.time() - t0)))
        except asyncio.TimeoutError:
            logger.warning("drain took longer than %.1f s; exiting anyway", grace)
    logger.info("stopped in %.2f s", loop.time() - t0)
    sys.stdout.flush()
    return 0


def run(settings: Settings) -> int:
    """:func:`serve` on the configured event loop (``server.event_loop``).

    uvloop is the default: with thousands of units each sending a fix a second, the loop's own
    cost per message decides how many units one process can take. At 5,000 units it made the
    difference between a fix reaching the console in 0.3 s (p99) and in 2.3 s
    (docs/benchmarks.md, "Geo"). ``asyncio`` is there for platforms without uvloop and for
    comparison; the test suite runs on uvloop, as the server does.

    Before anything is created the server claims its data directory and its port
    (:class:`~dispatch_server.instance.Instance`): :class:`~dispatch_server.instance.InstanceError`
    if another server holds either.
    """
    instance = Instance.claim(settings.data_dir, settings.server.host, settings.server.port,  # InstanceError
                              settings.archive_dir if settings.archive.enabled else None)
    malloc_arenas.limit(settings.server.malloc_arena_max)  # before any thread starts
    try:
        if settings.server.event_loop == "uvloop":
            import uvloop

            return uvloop.run(serve(settings, instance))
        return asyncio.run(serve(settings, instance))
    finally:
        instance.release()


async def serve_media_worker(boot: dict[str, Any]) -> int:
    """One media worker (:mod:`dispatch_server.media_workers` starts it): listen on 127.0.0.1,
    say where on standard output, and run until the front closes our standard input."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole group: the front drains us
    gc.set_threshold(GC_THRESHOLDS[0], GC_THRESHOLDS[1], GC_THRESHOLDS[2])  # as the front's (see serve)
    index = int(boot["index"])
    asyncio.get_running_loop().set_exception_handler(_closed_while_connecting)
    app = create_worker_app(section(MediaConfig, boot["media"], "media"), str(boot["secret"]), index)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        print(f"media-worker {index} listening on http://127.0.0.1:{port}", flush=True)
        loop = asyncio.get_running_loop()
        stdin = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
        await stdin.read()  # EOF: the front is stopping us, or is gone
    finally:
        await runner.cleanup()
    return 0


def _closed_while_connecting(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """aiortc's connect task of a peer connection closed while ICE was starting raises
    ``InvalidStateError("RTCIceTransport is closed")`` that nobody retrieves (a unit that ends its
    publish while it still connects, a worker draining sessions that were still connecting): not
    a fault, so not a traceback in the log. Installed in the front (media in-process with
    ``[media] workers = 0``) and in every media worker."""
    exc = context.get("exception")
    if isinstance(exc, InvalidStateError) and "is closed" in str(exc):
        logger.debug("a peer connection closed while it connected: %s", exc)
        return
    loop.default_exception_handler(context)


def run_media_worker() -> int:
    """``dispatch-server media-worker``: the front writes one JSON line (``media``, ``log``,
    ``node``, ``event_loop``, ``malloc_arena_max``, ``secret``, ``index``) on our standard input
    and keeps it open."""
    boot = json.loads(sys.stdin.readline())
    malloc_arenas.limit(int(boot.get("malloc_arena_max", 0)))  # as the front's, before any thread starts
    configure_logging(section(LogConfig, boot["log"], "log"), str(boot["node"]))
    if boot.get("event_loop") == "uvloop":
        import uvloop

        return uvloop.run(serve_media_worker(boot))
    return asyncio.run(serve_media_worker(boot))

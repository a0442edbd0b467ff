"""``field-client``: command line of the field unit simulator and publisher.

First SIGINT/SIGTERM: stop every unit cleanly (unpublish, WHIP ``DELETE``, close peers) and exit
0. A second signal cancels whatever is still closing and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from .config import SIGNALLING, UnitConfig
from .errors import FieldClientError, LinkError
from .fleet import fleet_configs, read_token_file, run_fleet
from .gps import parse_gps_spec
from .link import UnitLink
from .sources import parse_audio_source, parse_video_source
from .unit import run_unit

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from exc
    return w, h


def _typed(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse ``type`` that reports the parser's ValueError as a usage error."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    convert.__name__ = parse.__name__
    return convert


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="field-client",
        description="Publish a field unit's video, audio and GPS to the dispatch server.",
    )
    p.add_argument("--server", required=True, action="append", metavar="URL",
                   help="server base URL, e.g. http://127.0.0.1:8080. Repeat it for each node of a cluster: "
                        "the unit starts with the first and, when a node cannot be reached, moves on to the "
                        "next (round robin)")
    p.add_argument("--unit", help="unit id (with --fleet: ignored, ids come from --token-file)")
    p.add_argument("--token", help="unit token")
    p.add_argument("--token-file", type=Path,
                   help="file of 'unit_id token' lines: the fleet's units, or the token of --unit")
    p.add_argument("--video", type=_typed(parse_video_source), default="test-pattern",
                   help="test-pattern | file:PATH | device:/dev/video0 | none (default test-pattern)")
    p.add_argument("--audio", type=_typed(parse_audio_source), default="tone",
                   help="tone | file:PATH | device:NAME (ALSA) | none (default tone)")
    p.add_argument("--codec", choices=["vp8", "h264"], default="vp8", help="video codec (default vp8)")
    p.add_argument("--gps", type=_typed(parse_gps_spec), default=None,
                   help="sim[:LAT,LON[,RADIUS_M]] | nmea:PATH | none (default sim; with --sos: none, "
                        "so the server uses the unit's last known fix)")
    p.add_argument("--signalling", choices=SIGNALLING, default="sio",
                   help="publish over Socket.IO (default) or WHIP")
    p.add_argument("--auto-ack", action="store_true",
                   help="unattended terminal: acknowledge each instruction on arrival (never claims a human "
                        "task done). Without it, an officer answers at this terminal when it is one")
    p.add_argument("--sos", metavar="NOTE", nargs="?", const="",
                   help="raise an SOS for --unit (with an optional note), print the alert id and exit")
    p.add_argument("--notice", metavar="OFFICER", nargs="?", const="",
                   help="mark the spoken notice (已告知) of --unit's running action, by OFFICER if named, "
                        "print when it was marked and exit")
    p.add_argument("--applied-log", type=Path,
                   help="append applied instructions as JSON lines; ids already there are not "
                        "applied again (with --fleet: one file per unit, NAME.<unit>.EXT)")
    p.add_argument("--fleet", type=int, metavar="N", help="run the first N units of --token-file")
    p.add_argument("--size", type=_size, default=(640, 480), help="test-pattern size (default 640x480)")
    p.add_argument("--fps", type=int, default=30, help="test-pattern frame rate (default 30)")
    p.add_argument("--ice-server", action="append", default=[], metavar="URL",
                   help="STUN/TURN URL (repeatable; default none)")
    p.add_argument("--position-interval", type=float, default=1.0, metavar="S",
                   help="seconds between position fixes (default 1)")
    p.add_argument("--position-buffer", type=int, default=86_400, metavar="N",
                   help="fixes kept while the link is down, oldest dropped first (default 86400)")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="-v: debug logs of the client, -vv: of every library too")
    return p


def configs_from_args(args: argparse.Namespace) -> list[UnitConfig]:
    """The unit configs the arguments describe; ValueError names the offending option."""
    # argparse applies `type` to string defaults too, so these are parsed specs already.
    gps = args.gps if args.gps is not None else parse_gps_spec("none" if args.sos is not None else "sim")
    if args.auto_ack:
        answers = "auto-ack"
    elif args.fleet is None and args.sos is None and args.notice is None and sys.stdin.isatty():
        answers = "terminal"
    else:
        answers = "none"
    common = dict(
        server=args.server[0], other_servers=tuple(args.server[1:]), video=args.video, audio=args.audio,
        codec=args.codec, gps=gps, answers=answers,
        signalling=args.signalling, applied_log=args.applied_log, width=args.size[0],
        height=args.size[1], fps=args.fps, ice_servers=tuple(args.ice_server),
        position_interval_s=args.position_interval, position_buffer_size=args.position_buffer,
    )
    if args.fleet is not None:
        if args.fleet < 1:
            raise ValueError("--fleet must be at least 1")
        if args.token_file is None:
            raise ValueError("--fleet needs --token-file with 'unit_id token' lines")
        try:
            units = read_token_file(args.token_file, args.fleet)
        except OSError as exc:
            raise ValueError(f"--token-file: {exc}") from exc
        return fleet_configs(UnitConfig(unit_id=units[0][0], token=units[0][1], **common), units)
    if not args.unit:
        raise ValueError("--unit is required (or --fleet N with --token-file)")
    token = args.token
    if token is None and args.token_file is not None:
        try:
            tokens = _all_tokens(args.token_file)
        except OSError as exc:
            raise ValueError(f"--token-file: {exc}") from exc
        token = tokens.get(args.unit)
        if token is None:
            raise ValueError(f"--token-file {args.token_file} has no line for unit {args.unit}")
    if not token:
        raise ValueError("--token is required (or --token-file holding a line for --unit)")
    return [UnitConfig(unit_id=args.unit, token=token, **common)]


def _all_tokens(path: Path) -> dict[str, str]:
    tokens: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2 and not parts[0].startswith("#"):
            tokens[parts[0]] = parts[1]
    return tokens


def configure_logging(verbosity: int) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbosity >= 2 else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if verbosity == 1:
        for name in ("field_client", "media"):
            logging.getLogger(name).setLevel(logging.DEBUG)
    if verbosity < 2:
        # aiortc/aioice/socketio log every packet or ping at INFO/DEBUG; keep them to warnings.
        for name in ("aiortc", "aioice", "socketio", "engineio"):
            logging.getLogger(name).setLevel(logging.WARNING)


async def run(configs: Sequence[UnitConfig]) -> int:
    """Run the units until SIGINT/SIGTERM and stop them cleanly (0). A second signal exits at once
    (status 1), as the server does: no clean-up that could hang, and none half done that would
    print tracebacks from objects the closed event loop leaves behind."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if not stop.is_set():
            logger.info("%s: stopping (send again to force)", signal.Signals(signum).name)
            stop.set()
        else:
            logger.warning("%s again: exiting at once", signal.Signals(signum).name)
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(1)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        if len(configs) == 1:
            await run_unit(configs[0], stop)
        else:
            await run_fleet(configs, stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0


async def connect_any(cfg: UnitConfig) -> UnitLink:
    """A link to the first of the unit's servers that takes it (a one-shot command must not fail
    because one node of the cluster is down); the last node's :class:`LinkError` when none does."""
    for server in cfg.servers:
        link = UnitLink(server, cfg.unit_id, cfg.token,
                        connect_timeout_s=cfg.connect_timeout_s, ack_timeout_s=cfg.ack_timeout_s)
        try:
            await link.connect()
        except LinkError as exc:
            if server == cfg.servers[-1]:
                raise
            logger.warning("unit %s: %s; trying the next server", cfg.unit_id, exc)
        else:
            return link
    raise AssertionError("unreachable: cfg.servers is never empty")


async def raise_sos(cfg: UnitConfig, note: str) -> int:
    """One-shot SOS (一键求助) over the unit's link, with a fix only from a GPS named with --gps;
    without one the server uses the unit's last known fix (and says how old it is)."""
    from .gps import open_position_source
    from .link import position_message

    data: dict[str, object] = {"note": note}
    try:
        source = open_position_source(cfg.gps, random.Random())
        position = source.position(time.time()) if source is not None else None
    except (OSError, ValueError):
        position = None
    if position is not None:
        fix = position_message(position)
        data.update(lat=fix["lat"], lon=fix["lon"])

    link = await connect_any(cfg)
    try:
        ack = await link.call("sos", data)
    finally:
        await link.close()
    print(ack["alert_id"])
    logger.warning("unit %s: SOS raised (alert %s)", cfg.unit_id, ack["alert_id"])
    return 0


async def mark_notice(cfg: UnitConfig, officer: str) -> int:
    """One-shot: the officer gave the spoken notice (已告知) of the unit's running action."""
    link = await connect_any(cfg)
    try:
        ack = await link.call("notice", {"officer": officer} if officer else {})
    finally:
        await link.close()
    print(ack["notice_at"])
    logger.warning("unit %s: notice of action %s marked by %s", cfg.unit_id, ack["action_id"], ack["marked_by"])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        configs = configs_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    configure_logging(args.verbose)
    try:
        if args.sos is not None:
            return asyncio.run(raise_sos(configs[0], args.sos))
        if args.notice is not None:
            return asyncio.run(mark_notice(configs[0], args.notice))
        return asyncio.run(run(configs))
    except FieldClientError as exc:
        logger.error("%s", exc)
        return 1

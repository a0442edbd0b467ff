"""``dispatch-server``: run the server and administer units and people on the same data directory.

    dispatch-server [--config PATH] serve [--host H] [--port P] [--demo N]
    dispatch-server [--config PATH] add-unit ID --kind body|vehicle [--rotate]
    dispatch-server [--config PATH] add-user NAME --role operator|supervisor|auditor|admin
    dispatch-server [--config PATH] list-units

``add-unit`` prints the new token alone on the last line of standard output (it is shown once;
only its hash is stored). ``add-user`` reads the password from standard input when that is not a
terminal, and asks twice on a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
import time
from typing import Any, Sequence

from .auth import ROLES, UNIT_KINDS, USERNAME_RE, Authenticator, check_unit_id, hash_token, new_token
from .config import ConfigError, Settings, load_settings
from .errors import DispatchError
from .store import Store


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dispatch-server", description="Court enforcement field dispatch server")
    p.add_argument("--config", help="config file (default: $DISPATCH_CONFIG, else ./config.toml if present)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command")

    s = sub.add_parser("serve", help="run the server (the default command)")
    s.add_argument("--host", help="override server.host")
    s.add_argument("--port", type=int, help="override server.port (0 picks a free port)")
    s.add_argument("--demo", type=int, metavar="N", help="run N simulated units in-process (override demo.simulated_units)")

    u = sub.add_parser("add-unit", help="register a field unit and print its token")
    u.add_argument("unit_id")
    u.add_argument("--kind", choices=UNIT_KINDS, required=True)
    u.add_argument("--rotate", action="store_true", help="the unit exists: issue a new token, revoking the old one")

    a = sub.add_parser("add-user", help="create a person (password from stdin when not a terminal)")
    a.add_argument("username")
    a.add_argument("--role", choices=ROLES, required=True)
    a.add_argument("--reset", action="store_true", help="the user exists: set a new password")

    sub.add_parser("list-units", help="list registered units")
    return p


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, dict[str, Any]] = {}
    if getattr(args, "host", None):
        overrides.setdefault("server", {})["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides.setdefault("server", {})["port"] = args.port
    if getattr(args, "demo", None) is not None:
        overrides.setdefault("demo", {})["simulated_units"] = args.demo
    return load_settings(args.config, overrides=overrides)


def _read_password(min_len: int) -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise SystemExit("error: the two passwords differ")
        password = first
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < min_len:
        raise SystemExit(f"error: the password must have at least {min_len} characters")
    return password


def add_unit(settings: Settings, unit_id: str, kind: str, rotate: bool) -> str:
    check_unit_id(unit_id)
    token = new_token()
    store = Store(settings.data_dir)
    try:
        if rotate:
            if not store.set_unit_token(unit_id, hash_token(token)):
                raise SystemExit(f"error: unit {unit_id!r} does not exist")
        else:
            try:
                store.add_unit(unit_id, kind, hash_token(token), time.time())
            except KeyError:
                raise SystemExit(f"error: unit {unit_id!r} already exists (use --rotate for a new token)") from None
    finally:
        store.close()
    return token


def add_user(settings: Settings, username: str, role: str, password: str, reset: bool) -> None:
    if not USERNAME_RE.match(username):
        raise SystemExit(f"error: user name {username!r} is not valid (letters, digits, . _ @ -)")
    store = Store(settings.data_dir)
    try:
        hashed = Authenticator(store, settings.auth.session_ttl_s).hash_password(password)
        if reset:
            if not store.set_user_password(username, hashed):
                raise SystemExit(f"error: user {username!r} does not exist")
        else:
            try:
                store.add_user(username, role, hashed, time.time())
            except KeyError:
                raise SystemExit(f"error: user {username!r} already exists (use --reset)") from None
    finally:
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("aioice", "aiortc", "engineio", "socketio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not args.verbose else logging.DEBUG)
    try:
        settings = _settings(args)
        command = args.command or "serve"
        if command == "serve":
            from .server import serve

            return asyncio.run(serve(settings))
        if command == "add-unit":
            token = add_unit(settings, args.unit_id, args.kind, args.rotate)
            print(f"unit {args.unit_id} ({args.kind}) {'has a new token' if args.rotate else 'registered'}; "
                  "its token (shown once, store it on the device):")
            print(token)
            return 0
        if command == "add-user":
            add_user(settings, args.username, args.role, _read_password(settings.auth.min_password_length), args.reset)
            print(f"user {args.username} ({args.role}) {'updated' if args.reset else 'created'}")
            return 0
        if command == "list-units":
            store = Store(settings.data_dir)
            try:
                for u in store.list_units():
                    print(f"{u.id}\t{u.kind}\t{'disabled' if u.disabled else 'active'}")
            finally:
                store.close()
            return 0
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except DispatchError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 1  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    raise SystemExit(main())

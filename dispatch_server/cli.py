"""``dispatch-server``: run the server and administer units and people on the same data directory.

    dispatch-server [--config PATH] serve [--host H] [--port P] [--demo N]
    dispatch-server [--config PATH] add-unit ID --kind body|vehicle|phone [--rotate]
    dispatch-server [--config PATH] disable-unit ID [--enable]
    dispatch-server [--config PATH] add-user NAME --role operator|supervisor|auditor|admin [--reset]
    dispatch-server [--config PATH] disable-user NAME [--enable]
    dispatch-server [--config PATH] end-sessions NAME
    dispatch-server [--config PATH] list-units
    dispatch-server [--config PATH] retention-run [--dry-run]
    dispatch-server [--config PATH] migrate [--check]
    dispatch-server [--config PATH] backup FOLDER
    dispatch-server [--config PATH] export-state FILE
    dispatch-server [--config PATH] import-state FILE
    dispatch-server [--config PATH] migrate --to postgresql://…

``add-unit`` prints the new token alone on the last line of standard output (it is shown once;
only its hash is stored). ``add-user`` reads the password from standard input when that is not a
terminal, and asks twice on a terminal; with ``--reset`` it sets a new password and the given
role, and ends the person's sessions. ``migrate`` brings the database to this release's schema
version (every command and every start does it first; a newer version is refused, exit 2).
``export-state``/``import-state`` move the durable state between databases (either engine), checked
by row counts and checksums; ``migrate --to URL`` does both at once, from the configured database
into an empty PostgreSQL one (:mod:`dispatch_server.state_transfer`, docs/cluster.md).

Changes take effect at once on a running server sharing the data directory: a rotated or
disabled unit's open links, publish and telemetry channel close within a second, and so do the
open consoles and viewing sessions of a person disabled, reset or signed out.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from geo.track import TrackSchemaTooNew

from .auth import ROLES, UNIT_KINDS, USERNAME_RE, Authenticator, check_unit_id, hash_token, new_token
from .config import ConfigError, Settings, load_settings
from .errors import DispatchError
from .instance import InstanceError, running_pid
from .log_format import configure_logging
from .node import node_id
from .stores import migrations
from .stores.accounts import Accounts
from .stores.engines import open_database


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dispatch-server", description="Court enforcement field dispatch server")
    p.add_argument("--config", help="config file (default: $DISPATCH_CONFIG, else ./config.toml if present)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command")

    s = sub.add_parser("serve", help="run the server (the default command)")
    s.add_argument("--host", help="override server.host")
    s.add_argument("--port", type=int, help="override server.port (0 picks a free port)")
    s.add_argument("--demo", type=int, metavar="N",
                   help="run N simulated units (a field-client process; overrides demo.simulated_units)")

    u = sub.add_parser("add-unit", help="register a field unit and print its token")
    u.add_argument("unit_id")
    u.add_argument("--kind", choices=UNIT_KINDS, required=True)
    u.add_argument("--rotate", action="store_true", help="the unit exists: issue a new token, revoking the old one")

    a = sub.add_parser("add-user", help="create a person (password from stdin when not a terminal)")
    a.add_argument("username")
    a.add_argument("--role", choices=ROLES, required=True)
    a.add_argument("--reset", action="store_true", help="the user exists: set a new password")

    du = sub.add_parser("disable-unit", help="disable a unit: it is disconnected and refused until enabled")
    du.add_argument("unit_id")
    du.add_argument("--enable", action="store_true", help="enable it again (its token is unchanged)")

    dp = sub.add_parser("disable-user", help="disable a person: their sessions end and logins are refused")
    dp.add_argument("username")
    dp.add_argument("--enable", action="store_true", help="enable them again")

    es = sub.add_parser("end-sessions", help="end every session of a person (they log in again)")
    es.add_argument("username")

    sub.add_parser("list-units", help="list registered units")
    sub.add_parser("media-worker", help="internal: one media worker process, started by serve ([media] workers)")

    b = sub.add_parser("backup", help="copy the databases (pg_dump with [storage] url) and keys into a new folder, "
                                      "while the server runs (restore: docs/cluster.md)")
    b.add_argument("folder", help="a new or empty folder")

    m = sub.add_parser("migrate", help="bring the database's schema to this release's version (every start does "
                                       "it too); refuses a newer one")
    m.add_argument("--check", action="store_true",
                   help="only say whether it is needed (exit 0: up to date, 1: needed, 2: newer than this release)")
    m.add_argument("--to", metavar="URL", help="move the state of the configured database into this empty "
                                               "PostgreSQL database (postgresql://…), checked; no server may run")

    ex = sub.add_parser("export-state", help="write every table of the database into a new file (a snapshot, "
                                             "while the server runs), with row counts and checksums")
    ex.add_argument("file")
    im = sub.add_parser("import-state", help="load a file of export-state into the configured database, which "
                                             "must be empty; checked against the file's counts and checksums")
    im.add_argument("file")

    r = sub.add_parser("retention-run", help="delete recordings past their keep time (while no server runs; "
                                             "POST /api/retention/run while one does)")
    r.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
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
    db = open_database(settings.storage.url, settings.data_dir, settings.storage.pool_size)
    accounts = Accounts(db)
    try:
        if rotate:
            if not accounts.set_unit_token(unit_id, hash_token(token)):
                raise SystemExit(f"error: unit {unit_id!r} does not exist")
        else:
            try:
                accounts.add_unit(unit_id, kind, hash_token(token), time.time())
            except KeyError:
                raise SystemExit(f"error: unit {unit_id!r} already exists (use --rotate for a new token)") from None
    finally:
        db.close()
    return token


def add_user(settings: Settings, username: str, role: str, password: str, reset: bool) -> None:
    if not USERNAME_RE.match(username):
        raise SystemExit(f"error: user name {username!r} is not valid (letters, digits, . _ @ -)")
    db = open_database(settings.storage.url, settings.data_dir, settings.storage.pool_size)
    accounts = Accounts(db)
    try:
        hashed = Authenticator(accounts, settings.auth.session_ttl_s).hash_password(password)
        if reset:
            if not accounts.set_user_password(username, hashed):  # ends the person's sessions
                raise SystemExit(f"error: user {username!r} does not exist")
            accounts.set_user_role(username, role)
        else:
            try:
                accounts.add_user(username, role, hashed, time.time())
            except KeyError:
                raise SystemExit(f"error: user {username!r} already exists (use --reset)") from None
    finally:
        db.close()


def migrate(settings: Settings, check_only: bool) -> int:
    """``migrate``: bring the database to this release's schema version, saying from which."""
    if settings.storage.url:
        return migrate_postgres(settings.storage.url, check_only)
    path = settings.data_dir / "dispatch.sqlite3"
    if not path.exists():
        print(f"no database at {path} yet: the server makes one at schema version {migrations.LATEST}")
        return 0
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    try:
        found = migrations.check(conn, path)  # SchemaTooNew: exit 2 with its message
        if check_only:
            return _checked(path, found)
        start, end = migrations.upgrade(conn, path)
    finally:
        conn.close()
    return _migrated(path, start, end)


def _checked(where: object, found: int) -> int:
    """``migrate --check``: say whether the database at ``where`` (of version ``found``) is up to date."""
    if found == migrations.LATEST:
        print(f"database {where}: schema version {found}, up to date")
        return 0
    print(f"database {where}: schema version {found}; this release uses {migrations.LATEST}: "
          "run dispatch-server migrate (or start the server)")
    return 1


def _migrated(where: object, start: int, end: int) -> int:
    """``migrate``: say from which version to which the database at ``where`` was brought."""
    if start == end:
        print(f"database {where}: schema version {end}, up to date")
    else:
        steps = "; ".join(f"{v}: {migrations.STEPS[v][0]}" for v in range(start + 1, end + 1))
        print(f"database {where}: schema version {start} → {end} ({steps})")
    return 0


def migrate_postgres(url: str, check_only: bool) -> int:
    """``migrate`` on PostgreSQL (``[storage] url``)."""
    import psycopg

    from sqlcompat import display

    from .stores.postgres import PgConnection, PostgresDatabase

    where = display(url)
    if check_only:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=30) as raw:
                found = migrations.check_postgres(PgConnection(raw), where)
        except psycopg.OperationalError as exc:
            print(f"error: PostgreSQL at {where}: {str(exc).strip()}", file=sys.stderr)
            return 2
        return _checked(where, found)
    db = PostgresDatabase(url)
    start, end = db.migrated
    db.close()
    return _migrated(where, start, end)


def move_state(settings: Settings, command: str, where: str) -> int:
    """``export-state FILE``, ``import-state FILE``, ``migrate --to URL``: what was moved, per table."""
    from . import state_transfer

    if command == "migrate":
        if not where.startswith(("postgresql://", "postgres://")):
            raise state_transfer.StateTransferError("--to: a PostgreSQL URL "
                                                    "(postgresql://user:password@host:port/database)")
        pid = running_pid(settings.data_dir, settings.archive_dir)
        if pid is not None:  # what it wrote after the copy would be left behind
            raise state_transfer.StateTransferError(f"dispatch-server pid {pid} runs on {settings.data_dir}: "
                                                    "stop every node first")
    db = open_database(settings.storage.url, settings.data_dir, settings.storage.pool_size)
    try:
        if command == "export-state":
            figures = state_transfer.export_state(db, Path(where))
            verb = f"exported {db.engine} database {db.path} into {where}"
        elif command == "import-state":
            figures = state_transfer.import_state(db, Path(where))
            verb = f"imported {where} into {db.engine} database {db.path}; read back and checked"
        else:
            from .stores.postgres import PostgresDatabase

            try:
                target = PostgresDatabase(where, pool_size=2)
            except ConnectionError as exc:
                raise state_transfer.StateTransferError(f"--to: {exc}") from None
            try:
                figures = state_transfer.move(db, target, settings.data_dir)
                units, fixes, already = state_transfer.move_tracks(settings.data_dir / "tracks.sqlite3", where)
                print(f"GPS tracks: {fixes} fixes of {units} units moved from {settings.data_dir / 'tracks.sqlite3'}"
                      + (f" ({already} were there already)" if already else "") + "; counted back per unit")
                verb = (f"moved {db.engine} database {db.path} into {target.path}; read back and checked. "
                        f"Set [storage] url to it on every node")
            finally:
                target.close()
    finally:
        db.close()
    for line in state_transfer.report(figures):
        print(line)
    print(f"{verb}: {sum(f.rows for f in figures.values())} rows in {len(figures)} tables "
          f"({', '.join(state_transfer.RECOMPUTED)} are summed up again from them)")
    return 0


def change_access(settings: Settings, command: str, args: argparse.Namespace) -> str:
    """``disable-unit``, ``disable-user``, ``end-sessions``: what was done, for the operator."""
    db = open_database(settings.storage.url, settings.data_dir, settings.storage.pool_size)
    accounts = Accounts(db)
    try:
        if command == "disable-unit":
            if not accounts.set_unit_disabled(check_unit_id(args.unit_id), not args.enable):
                raise SystemExit(f"error: unit {args.unit_id!r} does not exist")
            return f"unit {args.unit_id} {'enabled' if args.enable else 'disabled'}"
        if accounts.get_user(args.username) is None:
            raise SystemExit(f"error: user {args.username!r} does not exist")
        if command == "disable-user":
            accounts.set_user_disabled(args.username, not args.enable)
            return f"user {args.username} {'enabled' if args.enable else 'disabled; their sessions ended'}"
        ended = accounts.end_sessions(args.username)
        return f"user {args.username}: {ended} session(s) ended"
    finally:
        db.close()


def retention_run(settings: Settings, dry_run: bool) -> int:
    """Exit status 0 when done (or nothing to do), 3 when halted by archive.max_delete_share."""
    from .evidence_catalog import catalog_location
    from .retention import halted_message, halted_params, retention_policy, run_retention_offline

    if not (settings.archive_dir / "ledger" / "entries.jsonl").is_file():
        print(f"no evidence archive at {settings.archive_dir}: nothing to do")
        return 0
    pid = running_pid(settings.data_dir, settings.archive_dir)  # one writer per ledger: a running server owns it
    if pid is not None:
        raise SystemExit(f"error: dispatch-server pid {pid} runs on {settings.data_dir}; run retention there: "
                         "POST /api/retention/run")
    where = f"cli:{getpass.getuser()}@{socket.gethostname()}"
    result = run_retention_offline(settings.archive_dir, settings.signing_key_path,
                                   catalog_location(settings),
                                   retention_policy(settings.archive), dry_run=dry_run, where=where,
                                   checkpoint=settings.checkpoint_path)
    for d in result.plan.listing():
        print(f"{d['recording_id']}\t{d['category']} keep_days={d['keep_days']:g}\tclosed {d['closed_at']}\t"
              f"{d['segments']} segments\t{d['bytes']} bytes")
    f = result.plan.figures()
    if result.halted and not dry_run:
        message = halted_message(f)
        print(message, file=sys.stderr)
        asyncio.run(_alert(settings, "retention_halted", message, halted_params(f)))
        return 3
    verb = "would delete" if dry_run else "deleted"
    print(f"{verb} {f['segments']} segments of {f['recordings']} recordings ({f['bytes']} bytes, {f['share']:.1%} of "
          f"{f['total_segments']}); {f['held_recordings']} kept for legal holds"
          + ("; HALT: above archive.max_delete_share" if result.halted else ""))
    return 1 if result.errors else 0


async def _alert(settings: Settings, kind: str, message: str, params: dict[str, Any]) -> None:
    """Store an alert for the consoles (they list open alerts when they connect)."""
    from .alerts import AlertService
    from .audit import AuditTrail

    async def nobody(event: str, data: dict[str, Any]) -> None:
        pass

    db = open_database(settings.storage.url, settings.data_dir, settings.storage.pool_size)
    try:
        alerts = AlertService(db, AuditTrail(db), nobody, settings.alerts.escalate_after_s)
        await alerts.raise_alert(kind, "archive", message, params=params)
    finally:
        db.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("aioice", "aiortc", "engineio", "socketio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not args.verbose else logging.DEBUG)
    if args.command == "media-worker":  # its front hands it its settings on standard input
        from .server import run_media_worker

        return run_media_worker()
    try:
        settings = _settings(args)
        configure_logging(settings.log, node_id(settings), args.verbose)
        command = args.command or "serve"
        if command == "serve":
            from .server import run

            return run(settings)
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
        if command in ("disable-unit", "disable-user", "end-sessions"):
            print(change_access(settings, command, args))
            return 0
        if command == "retention-run":
            return retention_run(settings, args.dry_run)
        if command == "migrate" and args.to:
            return move_state(settings, "migrate", args.to)
        if command == "migrate":
            return migrate(settings, args.check)
        if command in ("export-state", "import-state"):
            return move_state(settings, command, args.file)
        if command == "backup":
            from .backup import backup

            made = backup(settings.data_dir, Path(args.folder), settings.storage.url)
            for d in made["databases"]:
                print(f"{d['file']}: {sum(d['rows'].values())} rows in {len(d['rows'])} tables, "
                      f"schema version {d['schema_version']}, sha256 {d['sha256'][:16]}…")
            print(f"{len(made['keys'])} key files; manifest {Path(args.folder) / 'backup.json'} "
                  f"({made['seconds']} s)")
            return 0
        if command == "list-units":
            db = open_database(settings.storage.url, settings.data_dir, settings.storage.pool_size)
            try:
                for u in Accounts(db).list_units():
                    print(f"{u.id}\t{u.kind}\t{'disabled' if u.disabled else 'active'}")
            finally:
                db.close()
            return 0
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except ConnectionError as exc:  # the database named by [storage] url cannot be reached
        print(f"dispatch-server: {exc}", file=sys.stderr)
        return 2
    except InstanceError as exc:
        print(f"dispatch-server: {exc}", file=sys.stderr)
        return 2
    except DispatchError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except TrackSchemaTooNew as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    raise SystemExit(main())

"""``dispatch-audit``: check an evidence archive offline and hand out its public key.

    dispatch-audit verify [--archive DIR | --config PATH] [--public-key FILE] [--known-head SOURCE ...]
                          [--allow-unanchored] [--fresh [--server URL] [--token TOKEN]] [--sign-interval S]
                          [--json] [--quiet]
    dispatch-audit export-key [--archive DIR | --config PATH]
    dispatch-audit verify-export PACKAGE [--public-key FILE] [--json]
    dispatch-audit witness serve --dir DIR [--public-key FILE] [--host H] [--port P]

``verify`` prints one ``FAIL <kind> <item>: <message>`` line per failure (``WARN`` likewise unless
``--quiet``), progress on standard error and a summary line; ``--json`` prints the whole report as
one JSON object instead; ``verify-export`` does the same for an export package
(:mod:`recordings.package_verify`). Exit status: 0 the archive or package verifies, 1 it has
failures, 2 usage errors (no archive or package, unreadable key, bad config).

Subcommands are registered in :data:`SUBCOMMANDS`: a name, a function adding its arguments to a
sub-parser, and a function running it that returns the exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

from .archive_config import ArchiveLocation, ConfigError, config_path, configured_archive
from .checkpoint import CheckpointError, read_checkpoint
from .known_heads import KnownHead, KnownHeadError, load_known_heads
from .ledger import key_id, load_public_key, read_public_key_pem
from .package_verify import PackageNotFoundError, PackageReport, load_pinned_key, verify_package
from .verify import ArchiveNotFoundError, Report, verify_archive
from .witness import WitnessError, WitnessHTTPServer, WitnessStore

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or an archive that cannot be found: exit status 2."""


def add_archive_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--archive", metavar="DIR", help="archive directory (default: the one --config names)")
    p.add_argument("--config", metavar="PATH", help="server config.toml whose [archive] dir to use")


def archive_location(args: argparse.Namespace) -> tuple[Path, ArchiveLocation | None]:
    """``--archive``, else the archive of ``--config`` (or $DISPATCH_CONFIG / ./config.toml), read
    as the server reads it (:mod:`recordings.archive_config`) with its checkpoint and witnesses."""
    if args.archive:
        return Path(args.archive).expanduser(), None
    if config_path(args.config, os.environ) is None:
        raise UsageError("no archive given: pass --archive DIR or --config PATH")
    try:
        location = configured_archive(args.config, os.environ)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    return location.dir, location


def archive_dir(args: argparse.Namespace) -> Path:
    return archive_location(args)[0]


# ---- verify ----------------------------------------------------------------------------------


def _add_verify(p: argparse.ArgumentParser) -> None:
    add_archive_arguments(p)
    p.add_argument("--public-key", metavar="FILE",
                   help="the PEM public key you received separately; the archive must be signed with it")
    p.add_argument("--known-head", metavar="SOURCE", action="append", default=[],
                   help="tree heads kept outside the archive (a file of tree heads, an export package, a witness "
                        "directory or URL): the ledger must extend each of them; repeatable")
    p.add_argument("--allow-unanchored", action="store_true",
                   help="accept a check anchored in nothing outside the archive (no --public-key, no --known-head)")
    p.add_argument("--fresh", action="store_true",
                   help="first ask the running server to sign a tree head now (needs an admin's --token)")
    p.add_argument("--server", metavar="URL", help="the running server for --fresh (default: the one --config names)")
    p.add_argument("--token", metavar="TOKEN",
                   help="an admin's session token for --fresh (default: $DISPATCH_AUDIT_TOKEN)")
    p.add_argument("--sign-interval", metavar="S", type=float,
                   help="the server's archive.sign_interval_s (default: the config's, else 60): on a live archive, "
                        "entries newer than this since the last tree head are pending, older ones uncovered")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress or warnings; failures and the summary only")


class _ProgressPrinter:
    """Hashing progress on standard error, at most a few lines per second."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.5 and done < total:
            return
        self.last = now
        rate = done / max(now - self.t0, 1e-6) / 1e6
        print(f"hashing {done / 1e6:,.1f} of {total / 1e6:,.1f} MB ({rate:,.0f} MB/s)", file=sys.stderr, flush=True)


def _archive_summary(r: Report) -> str:
    n = len(r.failures)
    verdict = "OK" if r.ok else f"FAILED ({n} failure{'' if n == 1 else 's'})"
    live = f"live archive ({r.pending} entries pending the next tree head), " if r.live else ""
    return (f"{verdict}: {live}{r.entries} entries, {r.segments} segments ({r.segments_proven} inclusion proofs), "
            f"{r.snapshots} stills ({r.snapshots_proven} inclusion proofs), {r.operator_actions} operator actions, "
            f"{r.sths} tree heads (latest covers {r.tree_size}), "
            f"{r.known_heads_proven}/{r.known_heads} known heads extended, {r.files_hashed} files / "
            f"{r.bytes_hashed / 1e6:,.1f} MB hashed in {r.seconds:.2f} s, "
            f"{len(r.warnings)} warnings, key {r.key_id[:16] or '?'}{' (pinned)' if r.key_pinned else ''}")


def known_heads_of(args: argparse.Namespace, location: ArchiveLocation | None) -> list[KnownHead]:
    """``--known-head`` sources, and with ``--config`` the server's checkpoint and its witnesses."""
    heads: list[KnownHead] = []
    for source in args.known_head:
        try:
            heads += load_known_heads(source)
        except KnownHeadError as exc:
            raise UsageError(f"--known-head {exc}") from exc
    if location is not None:
        try:
            checkpoint = read_checkpoint(location.checkpoint)
        except CheckpointError as exc:
            raise UsageError(str(exc)) from exc
        if checkpoint is not None and checkpoint.latest_sth is not None:
            heads.append(KnownHead(f"checkpoint {location.checkpoint}", checkpoint.latest_sth))
        for witness in location.witnesses:
            try:
                heads += load_known_heads(witness)
            except KnownHeadError as exc:
                print(f"dispatch-audit: witness {witness} not read: {exc}", file=sys.stderr)
    return heads


def sign_fresh(args: argparse.Namespace, location: ArchiveLocation | None) -> None:
    """``--fresh``: POST /api/archive/sign on the running server, as an admin."""
    base = args.server or (location.server_url if location is not None else None)
    if not base:
        raise UsageError("--fresh needs --server URL (or --config naming the server)")
    token = args.token or os.environ.get("DISPATCH_AUDIT_TOKEN")
    if not token:
        raise UsageError("--fresh needs an admin's session token: --token or $DISPATCH_AUDIT_TOKEN")
    req = urllib.request.Request(base.rstrip("/") + "/api/archive/sign", data=b"", method="POST",
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            sth = json.loads(resp.read()).get("sth") or {}
    except urllib.error.HTTPError as exc:
        raise UsageError(f"--fresh: the server answered {exc.code}: {exc.read(500).decode(errors='replace')}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise UsageError(f"--fresh: {base}: {exc}") from exc
    print(f"the server signed a tree head of {sth.get('tree_size', '?')} entries at {sth.get('timestamp', '?')}",
          file=sys.stderr)


def _run_verify(args: argparse.Namespace) -> int:
    archive, location = archive_location(args)
    if args.fresh:
        sign_fresh(args, location)
    pinned = None
    if args.public_key:
        try:
            pinned = Path(args.public_key).read_bytes()
        except OSError as exc:
            raise UsageError(f"--public-key: {exc}") from exc
    known = known_heads_of(args, location)
    progress = None if (args.quiet or args.json) else _ProgressPrinter()
    try:
        interval = args.sign_interval or (location.sign_interval_s if location is not None else 60.0)
        report = verify_archive(archive, pinned, progress, known_heads=known, allow_unanchored=args.allow_unanchored,
                                sign_interval_s=interval)
    except ArchiveNotFoundError as exc:
        raise UsageError(str(exc)) from exc
    except ValueError as exc:
        raise UsageError(f"--public-key: {exc}") from exc
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        for f in report.failures:
            print(f"FAIL {f}")
        if not args.quiet:
            for f in report.warnings:
                print(f"WARN {f}")
        print(_archive_summary(report))
    return EXIT_OK if report.ok else EXIT_FAILURES


# ---- export-key ------------------------------------------------------------------------------


def _add_export_key(p: argparse.ArgumentParser) -> None:
    add_archive_arguments(p)


def _run_export_key(args: argparse.Namespace) -> int:
    archive = archive_dir(args)
    try:
        pem = read_public_key_pem(archive)
    except OSError as exc:
        raise UsageError(f"{archive}: no public key ({exc})") from exc
    sys.stdout.write(pem.decode("ascii"))
    return EXIT_OK


# ---- verify-export ---------------------------------------------------------------------------

VERIFY_EXPORT_HELP = "check an export package offline: signature, export hash, ledger inclusion proofs"


def _add_verify_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("package", metavar="PACKAGE", help="the export package (.zip) to check")
    p.add_argument("--public-key", metavar="FILE",
                   help="the court's PEM public key, obtained separately; the package must be signed with it")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _package_summary(r: PackageReport) -> str:
    verdict = "OK" if r.ok else f"FAILED ({len(r.failures)} failures)"
    req = r.request
    return (f"{verdict}: package {r.package_id or '?'} (sha256 {r.package_sha256[:16]}…), request "
            f"{req.get('id', '?')} case {req.get('case_number', '?')} action {req.get('action_id', '?')} for "
            f"{req.get('recipient', '?')}; {r.export_name or 'export'} {r.export_bytes:,} bytes sha256 "
            f"{r.export_sha256[:16]}…; {r.sources_proven}/{r.sources} source segments proven in the tree of "
            f"{r.tree_size} entries signed {r.sth_timestamp or '?'}; {r.redactions} redactions; {r.units} units, "
            f"{r.gaps} gaps; key {r.key_id[:16] or '?'}{' (pinned)' if r.key_pinned else ''}")


def run_verify_export(args: argparse.Namespace) -> int:
    """Exit status: 0 the package verifies, 1 it has failures; :class:`UsageError` for no such
    file or a bad ``--public-key``."""
    pinned = None
    if args.public_key:
        try:
            pinned = Path(args.public_key).read_bytes()
            load_pinned_key(pinned)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--public-key {args.public_key}: {exc}") from exc
    try:
        report = verify_package(Path(args.package), pinned)
    except PackageNotFoundError as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        for f in report.failures:
            print(f"FAIL {f}")
        for f in report.warnings:
            print(f"WARN {f}")
        print(_package_summary(report))
    return EXIT_OK if report.ok else EXIT_FAILURES


# ---- witness ---------------------------------------------------------------------------------

WITNESS_HELP = "keep the tree heads a server sends (a witness): refuse any the ledger does not provably extend"


def _add_witness(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("serve",), help="serve: answer GET /heads, GET /heads/latest, POST /heads")
    p.add_argument("--dir", required=True, metavar="DIR", help="the witness store (heads.jsonl, public_key.pem)")
    p.add_argument("--public-key", metavar="FILE",
                   help="the court's PEM public key (default: the store's own, taken from the first head's sender)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8787, help="0 picks a free port")


def _run_witness(args: argparse.Namespace) -> int:
    key = None
    if args.public_key:
        try:
            key = load_public_key(Path(args.public_key).read_bytes())
        except (OSError, ValueError) as exc:
            raise UsageError(f"--public-key {args.public_key}: {exc}") from exc
    store = WitnessStore(Path(args.dir).expanduser())
    try:
        held = store.key()
    except WitnessError as exc:
        raise UsageError(str(exc)) from exc
    if key is not None:
        if held is not None and key_id(held) != key_id(key):
            raise UsageError(f"{args.dir} keeps the heads of key {key_id(held)[:16]}…, not of --public-key "
                             f"{key_id(key)[:16]}…")
        store = WitnessStore(Path(args.dir).expanduser(), key)
    try:
        server = WitnessHTTPServer((args.host, args.port), store)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc}") from exc
    host, port = str(args.host), int(server.server_address[1])
    latest = store.latest()
    print(f"dispatch-audit witness listening on http://{host}:{port}/heads "
          f"({'holding size ' + str(latest['tree_size']) if latest else 'no head yet'})", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return EXIT_OK


# ---- wiring ----------------------------------------------------------------------------------

Subcommand = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]

SUBCOMMANDS: list[Subcommand] = [
    ("verify", "check an archive: ledger, signed tree heads, inclusion proofs, every file's hash",
     _add_verify, _run_verify),
    ("export-key", "print the archive's public key (PEM) to hand to auditors", _add_export_key, _run_export_key),
    ("verify-export", VERIFY_EXPORT_HELP, _add_verify_export, run_verify_export),
    ("witness", WITNESS_HELP, _add_witness, _run_witness),
]


def build_parser(subcommands: Sequence[Subcommand] = SUBCOMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dispatch-audit", description="Check an evidence archive offline.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text, add_arguments, run in subcommands:
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    try:
        return int(args.run(args))
    except UsageError as exc:
        print(f"dispatch-audit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Retention of the evidence archive as the server runs it: the policy from ``[archive]`` and the
offline run of ``dispatch-server retention-run`` (the deleting itself is ``recordings.retention``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from recordings.catalog import Catalog
from recordings.catalog_postgres import Connection
from recordings.ledger import Ledger
from recordings.retention import Policy, Retention, RunResult

from .config import ArchiveConfig


def retention_policy(archive: ArchiveConfig) -> Policy:
    return Policy({r.category: r.keep_days for r in archive.retention}, archive.default_category,
                  archive.max_delete_share)


def halted_message(f: dict[str, Any]) -> str:
    return (f"retention run halted: it would delete {f['segments']} of {f['total_segments']} segments "
            f"({f['share']:.0%}), more than archive.max_delete_share = {f['max_delete_share']:.0%}; "
            "nothing was deleted")


def halted_params(f: dict[str, Any]) -> dict[str, Any]:
    """The figures the console's text for ``retention_halted`` names."""
    return {"segments": f["segments"], "total_segments": f["total_segments"], "share": round(f["share"], 4),
            "max_delete_share": f["max_delete_share"]}


def run_retention_offline(archive_dir: Path, signing_key: Path, catalog_path: Path | Connection, policy: Policy, *,
                          dry_run: bool, where: str, clock: Callable[[], float] = time.time,
                          checkpoint: Path | None = None) -> RunResult:
    """``dispatch-server retention-run``: the same run on an archive no server has open (its
    ledger passes the same start-up check as the server's, :class:`LedgerIntegrityError` if not)."""
    ledger = Ledger(archive_dir, signing_key, where=where, clock=clock, checkpoint_path=checkpoint)
    ledger.open()
    catalog = Catalog(catalog_path)
    try:
        return Retention(catalog, ledger, archive_dir, policy, clock).run(dry_run=dry_run, actor="system", where=where)
    finally:
        catalog.close()
        ledger.close()

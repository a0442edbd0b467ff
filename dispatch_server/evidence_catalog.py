"""This node's catalog of the evidence archive, kept in step with the archive's ledger, and the
lock under which legal holds and retention runs change what may be deleted.

The catalog (``recordings.catalog.Catalog``, ``<data_dir>/catalog.sqlite3``; with ``[storage] url``
this node's part of the catalog every node shares in PostgreSQL, :func:`catalog_location`) indexes
the ledger for search; it starts after the archive (its ledger open and recovered) and follows every
sealed segment, closed recording and sealed still.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Callable

from recordings.archive import ArchiveService
from recordings.catalog import Catalog
from recordings.catalog_postgres import Connection
from recordings.checkpoint import CheckpointError, read_checkpoint
from recordings.retention import Policy, Retention

from .config import Settings
from .node import archive_node

logger = logging.getLogger(__name__)


def catalog_location(settings: Settings) -> Path | Connection:
    """Where this node's catalog lives: ``<data_dir>/catalog.sqlite3``, or with ``[storage] url``
    its part (named by :func:`archive_node`) of the catalog in that PostgreSQL database (connects)."""
    if settings.storage.url:
        return Connection(settings.storage.url, archive_node(settings))
    return settings.data_dir / "catalog.sqlite3"


class EvidenceCatalog:
    def __init__(self, catalog: Catalog, archive: ArchiveService, policy: Policy,
                 clock: Callable[[], float] = time.time) -> None:
        self.catalog = catalog
        self.archive = archive
        self.retention = Retention(catalog, archive.ledger, archive.root, policy, clock)
        self.admin_lock = asyncio.Lock()  # held by hold changes and retention runs
        self._sync_lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def sync(self) -> None:
        """Apply the ledger entries the catalog has not seen (cheap when there are none). A refused
        ledger (failed start-up check) is not read: the catalog stays as it was."""
        if self.archive.refused or self.catalog.next_index == self.archive.ledger.size:
            return
        async with self._sync_lock:
            await asyncio.to_thread(self.catalog.sync_from, self.archive.ledger)

    def verification(self) -> dict[str, Any]:
        """The ledger's last verification (blocking): when (the checkpoint's ``verified_at``: the
        start-up check or the latest signed tree head), how many entries, and whether it passed."""
        problems = list(self.archive.refused)
        at, entries = None, None
        path = self.archive.ledger.checkpoint_path
        try:
            checkpoint = read_checkpoint(path) if path is not None else None
        except CheckpointError as exc:
            checkpoint, problems = None, [*problems, str(exc)]
        if checkpoint is not None:
            at, entries = checkpoint.verified_at, checkpoint.entries
        return {"at": at, "entries": entries, "ok": not problems, "problems": problems}

    def _on_archive(self, kind: str, detail: dict[str, Any]) -> None:
        if kind in ("sealed", "closed", "snapshot"):
            self._dirty.set()

    async def _follow(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.sync()
            except Exception:
                logger.exception("catalog sync failed")

    async def start(self) -> None:
        """Catch up with the ledger, then follow it."""
        if not self.archive.refused:
            await asyncio.to_thread(self.catalog.sync_from, self.archive.ledger)
        self.archive.listeners.append(self._on_archive)
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="catalog-sync")

    async def close(self) -> None:
        if self._on_archive in self.archive.listeners:
            self.archive.listeners.remove(self._on_archive)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.to_thread(self.catalog.close)

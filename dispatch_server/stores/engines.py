"""Which engine holds the server's durable state: ``[storage] url`` empty, SQLite under the data
directory; ``postgresql://…``, PostgreSQL (:mod:`dispatch_server.stores.postgres`)."""

from __future__ import annotations

from pathlib import Path

from .database import Database, SqliteDatabase


def open_database(url: str, data_dir: Path, pool_size: int = 4) -> Database:
    """The database the settings name, migrated to this release's schema (blocking)."""
    if not url:
        return SqliteDatabase(data_dir)
    from .postgres import PostgresDatabase

    return PostgresDatabase(url, pool_size=pool_size)

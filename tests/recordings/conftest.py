"""The catalog's engines: a test that opens catalogs through :func:`open_catalog` runs on SQLite
and on PostgreSQL (a real server, :func:`tests.conftest.postgres_server`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from recordings.catalog import Catalog
from recordings.catalog_postgres import Connection
from tests.support.postgres_server import PostgresServer

OpenCatalog = Callable[[Path], Catalog]


@pytest.fixture(params=["sqlite", "postgresql"])
def open_catalog(request: pytest.FixtureRequest) -> Iterator[OpenCatalog]:
    """``open_catalog(path)``: the catalog file at ``path``, or on PostgreSQL node ``n1``'s part of a
    database of its own for each ``path`` (the same one when ``path`` is opened again; a new, empty
    one once the file at ``path`` has been deleted, as a deleted file is a new, empty catalog)."""
    if request.param == "sqlite":
        yield Catalog
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    databases: dict[Path, str] = {}

    def open_(path: Path) -> Catalog:
        if path not in databases or not path.exists():
            databases[path] = server.fresh_database()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()  # stands for the database: deleting it forgets the catalog
        return Catalog(Connection(databases[path], "n1"))
    yield open_

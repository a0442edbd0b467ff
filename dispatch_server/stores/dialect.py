"""The server database's statements on PostgreSQL (:mod:`sqlcompat`): its dialect, where a module
registers a statement that needs another text (:meth:`sqlcompat.Dialect.variant`), and its writer lock."""

from __future__ import annotations

from sqlcompat import COMPAT, Dialect, ddl

WRITE_LOCK = 0x64697370  # pg_advisory_xact_lock key of the single writer ("disp")
DIALECT = Dialect()  # no INSERT OR REPLACE and no reserved names among the server's statements
variant, translate = DIALECT.variant, DIALECT.translate

__all__ = ["COMPAT", "DIALECT", "WRITE_LOCK", "ddl", "translate", "variant"]

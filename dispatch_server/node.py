"""This node's name: ``[server] node_id``, or ``<hostname>-<pid>``; its archive's (:func:`archive_node`)."""

from __future__ import annotations

import os
import socket

from .config import Settings


def node_id(settings: Settings) -> str:
    return settings.server.node_id or f"{socket.gethostname()}-{os.getpid()}"


def archive_node(settings: Settings) -> str:
    """The name of this node's archive in a catalog every node shares (PostgreSQL): ``[server]
    node_id``, else ``<hostname>:<archive dir>``, which stays the same across restarts (unlike
    ``node_id``'s default) and differs between nodes on one host: a node's part of the catalog is
    found again by it, and never taken for another's."""
    return settings.server.node_id or f"{socket.gethostname()}:{settings.archive_dir}"

"""This node's name: ``[server] node_id``, or ``<hostname>-<pid>``; its archive's (:func:`archive_node`);
the URL other nodes reach it at (:func:`advertised`)."""

from __future__ import annotations

import dataclasses
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


def advertised(settings: Settings, bound: tuple[str, int] | None) -> Settings:
    """``settings`` with ``[cluster] advertise_url`` filled in from the address the listening socket
    is ``bound`` to, when it is empty: ``http://<host>:<port>`` (the host name for a wildcard bind)."""
    if settings.cluster.advertise_url or bound is None:
        return settings
    host, port = bound[0], bound[1]
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{port}"
    return dataclasses.replace(settings, cluster=dataclasses.replace(settings.cluster, advertise_url=url))

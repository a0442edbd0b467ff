"""This node's name: ``[server] node_id``, or ``<hostname>-<pid>``."""

from __future__ import annotations

import os
import socket

from .config import Settings


def node_id(settings: Settings) -> str:
    return settings.server.node_id or f"{socket.gethostname()}-{os.getpid()}"

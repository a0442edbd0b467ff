"""The server's log lines: text for people, or JSON lines a log collector can search (``[log] format``).

A JSON line carries ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``node``,
``component`` (the logger), ``message``, and the ids the line is about when it names them:
``unit`` (messages say ``unit <id>:``), ``action`` (``act-…``), ``case`` (a case number such as
``（2026）冀0916执123号``), ``request`` (the HTTP request being served; also sent back as
``X-Request-Id``), ``instruction`` (``ins-…``), ``footage_request`` (``fr-…``). An exception's
traceback goes into ``exception``. Nothing secret is logged: tokens, passwords and SDP never
appear in messages (a test scans the logs of the suite's servers for every secret it made).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys

from utctime import iso_millis

from .config import LogConfig

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_PATTERNS = {
    "unit": re.compile(r"\bunit ([A-Za-z0-9][A-Za-z0-9_.-]{0,63})\b"),
    "action": re.compile(r"\b(act-[0-9a-f]{12})\b"),
    "instruction": re.compile(r"\b(ins-[0-9a-f]{16})\b"),
    "footage_request": re.compile(r"\b(fr-[0-9a-f]{12})\b"),
    "case": re.compile(r"([（(〔]\d{4}[）)〕][^\s,;:]{1,40}?号)"),
}
NOISY = ("aioice", "aiortc", "engineio", "socketio", "aiohttp.access")


class JsonFormatter(logging.Formatter):
    def __init__(self, node: str) -> None:
        super().__init__()
        self._node = node

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        doc: dict[str, object] = {"time": iso_millis(record.created), "level": record.levelname, "node": self._node,
                                  "component": record.name, "message": message}
        for key, pattern in _PATTERNS.items():
            found = pattern.search(message)
            if found:
                doc[key] = found.group(1)
        request_id = REQUEST_ID.get()
        if request_id:
            doc["request"] = request_id
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def configure_logging(config: LogConfig, node: str, verbose: bool = False) -> None:
    """Set the root handler once, in the process's entry point (never on import)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    if config.format == "json":
        handler.setFormatter(JsonFormatter(node))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else config.level.upper())
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)

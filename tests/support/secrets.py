"""Every secret the suite makes (unit tokens, session tokens, passwords), so that no log line of
the suite's servers and processes can print one unnoticed (issue #19: no tokens or passwords in
any log line)."""

from __future__ import annotations

import logging

SECRETS: set[str] = set()
MIN_LENGTH = 12  # shorter strings match by chance


def remember(secret: str) -> str:
    if len(secret) >= MIN_LENGTH:
        SECRETS.add(secret)
    return secret


def found_in(text: str) -> list[str]:
    return [s[:6] + "…" for s in SECRETS if s in text]


class SecretWatch(logging.Handler):
    """A root logging handler that notes every record whose text holds a known secret."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a broken record is not this handler's business
            return
        if record.exc_info and record.exc_info[1] is not None:
            text += repr(record.exc_info[1])
        for leak in found_in(text):
            self.leaks.append(f"{record.name}: {leak} in {text[:200]!r}")

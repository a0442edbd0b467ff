"""Exceptions of the field client; each says which step failed and carries the server's code."""

from __future__ import annotations


class FieldClientError(Exception):
    """Base of field-client failures that end one connection attempt (the unit then retries)."""


class LinkError(FieldClientError):
    """The Socket.IO ``/unit`` link could not be set up or an acknowledgement did not arrive."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class SourceError(FieldClientError):
    """A media source (file, capture device) could not be opened or has no usable stream."""


class PublishRejected(FieldClientError):
    """The server refused a publish offer (``{"ok": false, "error": ...}`` or a WHIP 4xx/5xx)."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class AlreadyPublishing(PublishRejected):
    """``409 already_publishing``: a live publisher holds the unit. The server replaces a
    publisher that has been silent for a few seconds, so retrying after a backoff succeeds."""


def rejection(code: str, message: str, status: int | None = None) -> PublishRejected:
    """The exception for a server refusal, :class:`AlreadyPublishing` for that code."""
    cls = AlreadyPublishing if code == "already_publishing" else PublishRejected
    return cls(code, message, status)

"""The server's exception tree and its one mapping to HTTP statuses and Socket.IO payloads."""

from __future__ import annotations

from typing import Any


class DispatchError(Exception):
    """Base of every error the server reports to a client. ``code`` is stable, ``message`` is for people."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def payload(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class BadRequest(DispatchError):
    status, code = 400, "bad_request"


class BadSdp(DispatchError):
    status, code = 400, "bad_sdp"


class Unauthorized(DispatchError):
    status, code = 401, "unauthorized"


class Forbidden(DispatchError):
    status, code = 403, "forbidden"


class NotFound(DispatchError):
    status, code = 404, "not_found"


class Conflict(DispatchError):
    status, code = 409, "conflict"


class BodyTimeout(DispatchError):
    """408: a request body that did not arrive in time (``server.body_timeout_s``); the connection closes."""

    status, code = 408, "body_timeout"


class TooLarge(DispatchError):
    status, code = 413, "too_large"


class UnsupportedMediaType(DispatchError):
    status, code = 415, "unsupported_media_type"


class Gone(DispatchError):
    status, code = 410, "gone"


class TooManyAttempts(DispatchError):
    """429: too many failed attempts from one source; ``retry_after_s`` goes into ``Retry-After``."""

    status, code = 429, "locked_out"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(DispatchError):
    status, code = 503, "unavailable"


def sio_error(exc: DispatchError) -> dict[str, Any]:
    """Socket.IO acknowledgement for a failed request."""
    return {"ok": False, **exc.payload()}

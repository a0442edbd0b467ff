"""Shared edge behaviour of Socket.IO handlers: size limit, error mapping, refusal at connect,
an answer to events nobody handles."""

from __future__ import annotations

import functools
import logging
from typing import Any, Awaitable, Callable

import socketio
from socketio.exceptions import ConnectionRefusedError

from .. import strict_json
from ..errors import DispatchError, sio_error
from .messages import check_size

logger = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[dict[str, Any]]]


def refuse(exc: DispatchError) -> ConnectionRefusedError:
    """The connect_error a client sees: ``message`` plus ``data={"code", "message"}``."""
    return ConnectionRefusedError(exc.message, {"code": exc.code, "message": exc.message})


def event(limit_attr: str = "max_message_bytes") -> Callable[[Handler], Handler]:
    """Wrap ``on_<event>(self, sid, data)``: check size, map errors to ``{"ok": false, ...}`` acks."""

    def wrap(fn: Handler) -> Handler:
        name = fn.__name__.removeprefix("on_")

        @functools.wraps(fn)
        async def handler(self: Any, sid: str, data: Any = None, *extra: Any) -> dict[str, Any]:
            try:
                if extra:
                    raise DispatchError(f"{name}: expected one argument, got {1 + len(extra)}", code="bad_message")
                check_size(data, getattr(self.limits, limit_attr), name)
                strict_json.check(data, name)
                return await fn(self, sid, data)
            except DispatchError as exc:
                logger.info("%s %s: %s refused: %s", self.namespace, sid, name, exc.message)
                return sio_error(exc)
            except Exception:
                logger.exception("%s %s: %s failed", self.namespace, sid, name)
                return {"ok": False, "error": {"code": "internal", "message": f"{name} failed on the server"}}

        return handler

    return wrap


class EdgeNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """A namespace that answers every call: an event it has no handler for gets
    ``{"ok": false, "error": {"code": "unknown_event"}}`` (python-socketio would leave the caller
    waiting for an acknowledgement that never comes). Clients cannot send ``connect`` or
    ``disconnect`` as events: :mod:`.packet` refuses reserved names before they get here."""

    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event in ("connect", "disconnect") or callable(getattr(self, f"on_{event}", None)):
            return await super().trigger_event(event, *args)
        logger.info("%s: unknown event %r", self.namespace, event[:60])
        return sio_error(DispatchError(f"unknown event {event[:60]!r} on {self.namespace}", code="unknown_event"))

"""Playback tickets: evidence URLs an ``<img>`` or ``<video>`` element can fetch without an
``Authorization`` header.

A ticket is an HMAC (key made at start, kept in memory) over the session's token hash, the one
thing it opens (its *scope*: a recording's segment, :func:`segment_scope`, a still,
:func:`snapshot_scope`, or a request's export, :func:`export_scope`) and an expiry
``TICKET_TTL_S`` ahead. Each request with a ticket still looks the session up and checks the role,
so logging out or a role change takes effect at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from typing import Callable

from ..auth import Person
from ..errors import Unauthorized

TICKET_TTL_S = 900
TICKET_PARTS = (re.compile(r"[0-9]{1,12}"), re.compile(r"[0-9a-f]{64}"), re.compile(r"[A-Za-z0-9_-]{24}"))


def segment_scope(recording_id: str, seq: int) -> str:
    return f"segment/{recording_id}/{seq}"


def snapshot_scope(snapshot_id: str) -> str:
    return f"snapshot/{snapshot_id}"


def export_scope(request_id: str) -> str:
    """A request's finished export, for the court to watch before releasing it."""
    return f"export/{request_id}"


class PlaybackTickets:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._key = secrets.token_bytes(32)
        self._clock = clock

    def _mac(self, token_hash: str, scope: str, expires: int) -> str:
        msg = f"{expires}.{token_hash}.{scope}".encode()
        return base64.urlsafe_b64encode(hmac.new(self._key, msg, hashlib.sha256).digest()[:18]).decode()

    def ticket(self, person: Person, scope: str) -> str:
        expires = int(self._clock()) + TICKET_TTL_S
        return f"{expires}.{person.token_hash}.{self._mac(person.token_hash, scope, expires)}"

    def session_of(self, ticket: str, scope: str) -> str:
        """The session token hash a valid ticket for ``scope`` carries; 401 otherwise."""
        parts = ticket.split(".")
        if len(parts) != 3 or not all(p.fullmatch(v) for p, v in zip(TICKET_PARTS, parts, strict=True)):
            raise Unauthorized("malformed playback ticket", code="bad_ticket")
        expires, token_hash, mac = int(parts[0]), parts[1], parts[2]
        if not hmac.compare_digest(mac, self._mac(token_hash, scope, expires)):
            raise Unauthorized("the playback ticket is not valid for this file", code="bad_ticket")
        if expires < self._clock():
            raise Unauthorized("the playback ticket expired: ask for the file's URL again", code="ticket_expired")
        return token_hash

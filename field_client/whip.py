"""WHIP ingest client (RFC 9725): ``POST {server}/whip/{unit}`` with the offer, ``DELETE`` to end.

No trickle ICE: aiortc puts every candidate in the offer, and the server's answer holds all of
its own, so one POST sets up the session.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from urllib.parse import quote, urljoin

import aiohttp

from .errors import LinkError, rejection

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WhipResource:
    """A published WHIP session: the answer and the absolute URL to ``DELETE``."""

    answer_sdp: str
    location: str

    @property
    def session_id(self) -> str:
        return self.location.rstrip("/").rsplit("/", 1)[-1]


class WhipClient:
    """Publishes one unit through WHIP over a caller-owned ``aiohttp.ClientSession``."""

    def __init__(self, http: aiohttp.ClientSession, server: str, unit_id: str, token: str,
                 timeout_s: float = 10.0) -> None:
        self._http = http
        self.endpoint = f"{server}/whip/{quote(unit_id, safe='')}"
        self.unit_id = unit_id
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def publish(self, offer_sdp: str) -> WhipResource:
        """POST the offer; ``PublishRejected`` (``AlreadyPublishing`` for 409) on refusal."""
        headers = {**self._auth, "Content-Type": "application/sdp"}
        try:
            async with self._http.post(self.endpoint, data=offer_sdp.encode(), headers=headers,
                                       timeout=self._timeout) as resp:
                body = await resp.text()
                if resp.status == 201:
                    location = resp.headers.get("Location")
                    if not location:
                        raise LinkError("WHIP answer without a Location header")
                    return WhipResource(body, urljoin(self.endpoint, location))
                code, message = _error_body(resp.status, body)
                raise rejection(code, message, resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LinkError(f"WHIP POST {self.endpoint} failed: {exc or type(exc).__name__}") from exc

    async def delete(self, resource: WhipResource) -> None:
        """End the session; failures are logged (the server times the publisher out anyway)."""
        try:
            async with self._http.delete(resource.location, headers=self._auth,
                                         timeout=self._timeout) as resp:
                if resp.status >= 300:
                    logger.info("unit %s: WHIP DELETE answered %d", self.unit_id, resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.info("unit %s: WHIP DELETE failed: %s", self.unit_id, exc or type(exc).__name__)


def _error_body(status: int, body: str) -> tuple[str, str]:
    """``(code, message)`` from the server's JSON error shape, or from the status alone."""
    try:
        err = json.loads(body)["error"]
        return str(err["code"]), str(err.get("message", ""))
    except (ValueError, KeyError, TypeError):
        return f"http_{status}", body[:200] or f"HTTP {status}"

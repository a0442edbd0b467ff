"""Node-to-node credentials: a short-lived token one node signs to watch a unit on another.

A token is ``dn1.<payload>.<signature>``: the payload is base64url JSON ``{"n": issuing node,
"u": unit id, "e": expiry (epoch seconds)}``, the signature HMAC-SHA256 of ``dn1.<payload>`` with
``[cluster] secret``, which every node shares. A token is good for one unit until it expires
(``token_ttl_s`` after signing). Every refusal is written to the audit trail (verb
``node_token_refused``) as well as answered 401: a forged token means someone inside the network
tries to watch a unit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from typing import Callable

from .audit import AuditTrail
from .errors import Unauthorized

logger = logging.getLogger(__name__)

PREFIX = "dn1."


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def is_node_token(token: str | None) -> bool:
    """Whether ``token`` claims to be a node token (it may still be forged)."""
    return bool(token) and str(token).startswith(PREFIX)


class NodeTokens:
    """Signs this node's tokens and checks other nodes'. Without a secret it signs nothing and
    refuses every node token."""

    def __init__(self, secret: str, node: str, ttl_s: float, audit: AuditTrail,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = secret.encode("utf-8")
        self.node = node
        self._ttl_s = ttl_s
        self._audit = audit
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return bool(self._key)

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest())

    def sign(self, unit_id: str) -> str:
        """A token for this node to watch ``unit_id`` on another node."""
        if not self.enabled:
            raise RuntimeError("cluster.secret is empty: this node signs no node tokens")
        payload = {"n": self.node, "u": unit_id, "e": round(self._clock() + self._ttl_s, 3)}
        body = PREFIX + _b64(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
        return f"{body}.{self._sign(body)}"

    async def check(self, token: str, unit_id: str, address: str) -> str:
        """The issuing node of a valid token for ``unit_id``; else the refusal is audited and
        :class:`Unauthorized` (401 ``bad_node_token``) raised."""
        claimed = "unknown"
        try:
            body, _, signature = token.rpartition(".")
            payload = json.loads(_unb64(body[len(PREFIX):]))
            if not isinstance(payload, dict):
                raise ValueError("payload is not an object")
            claimed = str(payload.get("n", "unknown"))[:128]
            if not self.enabled:
                reason = "this node has no cluster.secret"
            elif not hmac.compare_digest(signature, self._sign(body)):
                reason = "bad signature"
            elif payload.get("u") != unit_id:
                reason = f"token is for unit {str(payload.get('u'))[:64]!r}"
            elif not isinstance(payload.get("e"), (int, float)) or payload["e"] < self._clock():
                reason = "token expired"
            else:
                return claimed
        except (ValueError, binascii.Error, UnicodeError) as exc:
            reason = f"malformed token ({exc.__class__.__name__})"
        logger.warning("unit %s: node token from %s refused (claims node %r): %s", unit_id, address, claimed, reason)
        await self._audit.append(f"node:{claimed}", "node_token_refused", unit_id, reason=reason, address=address)
        raise Unauthorized(f"node token refused: {reason}", code="bad_node_token")

"""Who is calling: the peer's address, or — only when the peer is a trusted reverse proxy — the
client its ``X-Forwarded-For`` names (``server.trusted_proxies``).

From any other peer the header is the client's say-so and is ignored, so nobody escapes a lockout
or a cap by writing a header. Shared by the HTTP handlers (:func:`http.request.client_ip`), the
connection guard and the Socket.IO handshake cap.
"""

from __future__ import annotations

import functools
import ipaddress


class TrustedProxies:
    """The configured proxies, parsed once."""

    def __init__(self, proxies: tuple[str, ...]) -> None:
        self._networks = tuple(ipaddress.ip_network(p, strict=False) for p in proxies)

    def trusts(self, address: str) -> bool:
        if not self._networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def client(self, peer: str, forwarded_for: str) -> str:
        """``peer``, or when it is trusted the nearest hop of ``forwarded_for`` that is not itself a
        trusted proxy (the peer again when that hop is not an address)."""
        if not self.trusts(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop if _is_address(hop) else peer
        return peer


@functools.lru_cache(maxsize=8)
def trusted_proxies(proxies: tuple[str, ...]) -> TrustedProxies:
    """The parsed form of ``server.trusted_proxies`` (settings are frozen: parsed once per value)."""
    return TrustedProxies(proxies)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True

"""Password guessing made slow: failed logins are counted per account from one address, per
address, and per account from everywhere.

After ``free`` failures a key is locked for ``base_s``, doubling with each further failure up to
``max_s``; a login while locked is refused with 429 and "try again in N s" whether or not its
password is right, so a guesser cannot find the password by trying during a lock. The thresholds
keep a stranger from locking a person out: guessing someone's password from one address locks
that address for that account after 5 failures (and the address for everyone after 20), while the
account itself locks for all addresses only after 50 (a guess spread over many addresses).
A success clears the account's counts from that address. Counts live in memory on each node and
fade after an hour of quiet.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

from .errors import TooManyAttempts


@dataclass
class _Count:
    failures: int = 0
    locked_until: float = 0.0
    last: float = 0.0


@dataclass(frozen=True)
class ThrottleRule:
    free: int  # failures allowed before the first lock
    base_s: float
    max_s: float


PAIR_RULE = ThrottleRule(free=5, base_s=2.0, max_s=900.0)  # one account from one address
ADDRESS_RULE = ThrottleRule(free=20, base_s=2.0, max_s=900.0)
ACCOUNT_RULE = ThrottleRule(free=50, base_s=2.0, max_s=300.0)
FORGET_S = 3600.0
MAX_TRACKED = 100_000  # keys kept; the quietest go first


class LoginThrottle:
    def __init__(self, pair: ThrottleRule = PAIR_RULE, address: ThrottleRule = ADDRESS_RULE,
                 account: ThrottleRule = ACCOUNT_RULE, clock: Callable[[], float] = time.monotonic) -> None:
        self._rules = {"pair": pair, "address": address, "account": account}
        self._clock = clock
        self._counts: dict[tuple[str, str], _Count] = {}

    def check(self, account: str, address: str) -> None:
        """Raise :class:`TooManyAttempts` while either the account or the address is locked."""
        now = self._clock()
        for kind, key in self._keys(account, address):
            count = self._counts.get((kind, key))
            if count is not None and count.locked_until > now:
                wait = math.ceil(count.locked_until - now)
                what = {"pair": "this account from here", "address": "this address", "account": "this account"}[kind]
                raise TooManyAttempts(f"too many failed logins for {what}: try again in {wait} s", wait)

    @staticmethod
    def _keys(account: str, address: str) -> tuple[tuple[str, str], ...]:
        return (("pair", f"{account}|{address}"), ("address", address), ("account", account))

    def failed(self, account: str, address: str) -> list[str]:
        """Count a failure; the kinds (``pair``, ``address``, ``account``) that it locked."""
        now = self._clock()
        locked = []
        for kind, subject in self._keys(account, address):
            rule = self._rules[kind]
            count = self._counts.setdefault((kind, subject), _Count())
            if now - count.last > FORGET_S:
                count.failures = 0
            count.failures += 1
            count.last = now
            over = count.failures - rule.free
            if over > 0:
                count.locked_until = now + min(rule.base_s * 2 ** (over - 1), rule.max_s)
                locked.append(kind)
        if len(self._counts) > MAX_TRACKED:
            for key, _ in sorted(self._counts.items(), key=lambda kv: kv[1].last)[: MAX_TRACKED // 10]:
                del self._counts[key]
        return locked

    def succeeded(self, account: str, address: str) -> None:
        self._counts.pop(("pair", f"{account}|{address}"), None)

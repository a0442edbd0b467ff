"""The server's side of witnesses: every signed tree head goes to each one, with its proof.

``[archive] witnesses`` lists directories (another disk, a mounted share of another machine:
a :class:`~recordings.witness.WitnessStore` the server writes itself) and ``http(s)://`` URLs of
``dispatch-audit witness serve``. :class:`WitnessSender` delivers the newest tree head to each
from one thread, with the RFC 9162 consistency proof from the size the witness already holds
(asked for when unknown: the witness answers 412 with its latest head). A witness that refuses a
head (409: the ledger does not extend what it holds) is reported through ``on_refused``; one that
cannot be reached gets the next head later (only the newest one is ever pending: consistency with
it implies consistency with every head in between).

At start, before the ledger takes a new entry, :func:`latest_heads` reads what every witness
holds so that :meth:`recordings.ledger.Ledger.open` can refuse a ledger that does not extend it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .witness import WitnessStore

logger = logging.getLogger(__name__)

RETRY_S = 30.0  # an unreachable witness is tried again this often (and at every new head)
TIMEOUT_S = 5.0


class WitnessUnreachableError(Exception):
    """The witness did not answer (network, file system); not a verdict on the ledger."""


class ProofSource(Protocol):
    """What the sender needs of the ledger."""

    def consistency_proof(self, old_size: int, size: int) -> list[str]: ...


def is_url(target: str) -> bool:
    return target.startswith(("http://", "https://"))


def _heads_url(target: str) -> str:
    url = target.rstrip("/")
    return url if url.endswith("/heads") else url + "/heads"


def _request(url: str, body: dict[str, Any] | None, timeout: float) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read(1 << 20) or b"null")
    except urllib.error.HTTPError as exc:
        try:
            payload = json.loads(exc.read(1 << 20) or b"null")
        except ValueError:
            payload = None
        return exc.code, payload
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise WitnessUnreachableError(f"{url}: {exc}") from exc


def fetch_latest(target: str, timeout: float = TIMEOUT_S) -> dict[str, Any] | None:
    """The newest head ``target`` holds (None: none yet); :class:`WitnessUnreachableError` if it
    cannot be asked."""
    if is_url(target):
        status, body = _request(_heads_url(target) + "/latest", None, timeout)
        if status == 404:
            return None
        if status != 200 or not isinstance(body, dict):
            raise WitnessUnreachableError(f"{target}: answered {status}")
        return body
    directory = Path(target)
    if not directory.is_dir():
        raise WitnessUnreachableError(f"{target}: not a directory (the witness's disk is not mounted?)")
    try:
        return WitnessStore(directory).latest()
    except OSError as exc:
        raise WitnessUnreachableError(f"{target}: {exc}") from exc


def latest_heads(targets: Sequence[str], timeout: float = TIMEOUT_S) -> tuple[list[tuple[str, dict[str, Any]]],
                                                                                list[str]]:
    """What every witness holds: ``([(witness, head), ...], notes on those that did not answer)``."""
    heads, notes = [], []
    for target in targets:
        try:
            head = fetch_latest(target, timeout)
        except WitnessUnreachableError as exc:
            notes.append(f"witness not reached at start, its head not checked: {exc}")
            continue
        if head is not None:
            heads.append((target, head))
    return heads, notes


class WitnessSender:
    """Delivers tree heads to ``targets`` from its own thread. :meth:`signed` may be called from
    any thread (it is the ledger's ``on_signed``); :meth:`close` delivers what is pending, for at
    most ``timeout`` seconds, and stops the thread."""

    def __init__(self, targets: Sequence[str], ledger: ProofSource, key: Ed25519PublicKey,
                 on_refused: Callable[[str, str], None], timeout: float = TIMEOUT_S) -> None:
        self._targets = list(targets)
        self._ledger = ledger
        self._key = key
        self._on_refused = on_refused
        self._timeout = timeout
        self._cond = threading.Condition()
        self._pending: dict[str, dict[str, Any]] = {}  # target -> newest head not yet kept
        self._held: dict[str, int] = {}  # target -> the size it holds, when known
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.delivered: dict[str, int] = {}  # target -> the size it last kept (for status and tests)

    def start(self) -> None:
        if self._targets and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="witness-sender", daemon=True)
            self._thread.start()

    def signed(self, sth: dict[str, Any]) -> None:
        with self._cond:
            for target in self._targets:
                self._pending[target] = sth
            self._cond.notify()

    def close(self, timeout: float = TIMEOUT_S) -> None:
        thread = self._thread
        if thread is None:
            return
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending and time.monotonic() < deadline:
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            self._stopping = True
            self._cond.notify_all()
        thread.join(max(0.0, deadline - time.monotonic()) + 0.5)
        self._thread = None
        if self._pending:
            logger.warning("witnesses: the last tree head did not reach %s", ", ".join(sorted(self._pending)))

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                work = dict(self._pending)
            failed = False
            for target, sth in work.items():
                try:
                    self._deliver(target, sth)
                except WitnessUnreachableError as exc:
                    logger.warning("witness %s not reached (%s); trying again with the next tree head", target, exc)
                    failed = True
                    continue
                except Exception:
                    logger.exception("witness %s: delivery failed", target)
                    failed = True
                    continue
                with self._cond:
                    if self._pending.get(target) is sth:
                        del self._pending[target]
                    self._cond.notify_all()
            if failed:
                with self._cond:
                    if not self._stopping:
                        self._cond.wait(RETRY_S)

    def _proof(self, held: int | None, size: int) -> list[str]:
        return self._ledger.consistency_proof(held, size) if held and held < size else []

    def _deliver(self, target: str, sth: dict[str, Any]) -> None:
        size = int(sth["tree_size"])
        if not is_url(target):
            directory = Path(target)
            if not directory.is_dir():
                raise WitnessUnreachableError(f"{target}: not a directory (the witness's disk is not mounted?)")
            store = WitnessStore(directory)
            try:
                latest = store.latest()
                held = int(latest["tree_size"]) if latest else None
                verdict = store.submit(sth, held, self._proof(held, size), key=self._key)
            except OSError as exc:
                raise WitnessUnreachableError(f"{target}: {exc}") from exc
            if verdict.status != "kept":
                self._refused(target, verdict.reason)
            else:
                self.delivered[target] = size
            return
        url = _heads_url(target)
        held = self._held.get(target)
        for _ in range(2):
            status, body = _request(url, {"sth": sth, "from_size": held,
                                          "consistency": self._proof(held, size)}, self._timeout)
            latest = body.get("latest") if isinstance(body, dict) else None
            if status == 412 and isinstance(latest, dict) and isinstance(latest.get("tree_size"), int):
                held = self._held[target] = latest["tree_size"]
                if held > size:
                    break
                continue
            if status == 200:
                self._held[target] = self.delivered[target] = size
                return
            if status == 409:
                message = body.get("message") if isinstance(body, dict) else None
                self._refused(target, str(message or "refused"))
                return
            raise WitnessUnreachableError(f"{target}: answered {status}")
        self._refused(target, f"it holds a tree head of size {held}, larger than this ledger's {size}: the ledger "
                              "was rolled back")

    def _refused(self, target: str, reason: str) -> None:
        logger.error("witness %s refused the tree head: %s", target, reason)
        try:
            self._on_refused(target, reason)
        except Exception:
            logger.exception("witness refusal not reported")

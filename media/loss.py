"""Loss recovery of the packet engine: the packet cache that answers viewers' NACKs, and the NACK
tracker that asks a publisher again for the packets it lost."""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

from .rtpwire import seq_delta


class CachedPacket(NamedTuple):
    sequence_number: int  # the stream's continuous (forwarded) sequence number
    timestamp: int
    marker: bool
    payload: bytes


class PacketCache:
    """The last ``size`` forwarded packets of one stream, by sequence number (512 ≈ 5 s of
    1 Mbit/s video), and with ``max_age_s`` none older than that: a NACK comes within a round
    trip, and 512 packets of video held ~0.6 MB per stream."""

    def __init__(self, size: int = 512, max_age_s: float | None = None) -> None:
        self._size = size
        self._slots: list[CachedPacket | None] = [None] * size
        self._max_age_s = max_age_s
        self._puts: deque[tuple[float, int]] = deque()  # (time, sequence number), oldest first

    def put(self, packet: CachedPacket, now: float | None = None) -> None:
        """Cache ``packet``; ``now`` (seconds, any clock) lets packets older than ``max_age_s`` go."""
        self._slots[packet.sequence_number % self._size] = packet
        if self._max_age_s is None or now is None:
            return
        puts = self._puts
        puts.append((now, packet.sequence_number))
        oldest = now - self._max_age_s
        while puts[0][0] < oldest:
            seq = puts.popleft()[1]
            slot = seq % self._size
            old = self._slots[slot]
            if old is not None and old.sequence_number == seq:
                self._slots[slot] = None

    def get(self, sequence_number: int) -> CachedPacket | None:
        packet = self._slots[sequence_number % self._size]
        if packet is None or packet.sequence_number != sequence_number:
            return None
        return packet

    def clear(self) -> None:
        self._slots = [None] * self._size
        self._puts.clear()


class NackTracker:
    """Sequence numbers missing from a publisher's stream: each is NACKed at once, then again at
    growing intervals (``retry_s``, 1.5 × ``retry_s``, 2 × ``retry_s`` ...) up to ``max_tries``
    times, and given up as lost for good when the next try would be due (0.7 s with the defaults)
    or ``give_up_s`` after it went missing, whichever comes first; it is forgotten when it arrives.

    The defaults fit a mobile link of up to ~250 ms round trip with 5% loss each way: a try fails
    when the NACK or the retransmission is lost (~10%), so four tries leave ~1 in 10 000 lost
    packets unrecovered. Those are what :meth:`take_lost` returns: a frame that needs one cannot be
    decoded, so the caller asks the publisher for a keyframe (mediasoup's NackGenerator does the
    same when its retries run out).

    Sequence numbers here are the publisher's own (16-bit). Runs without a task: :meth:`due` is
    called as packets arrive, and a stream without packets has nothing to recover.
    """

    MAX_GAP = 256  # a jump further than this is a restart or a burst beyond the cache: not NACKed

    def __init__(self, retry_s: float = 0.1, max_tries: int = 4, give_up_s: float = 1.0) -> None:
        self._retry_s = retry_s
        self._max_tries = max_tries
        self._give_up_s = give_up_s
        self._missing: dict[int, list[float]] = {}  # seq -> [first missed at, last NACKed at, tries]
        self._highest: int | None = None
        self._lost: list[int] = []  # given up since the last take_lost()
        self.active = True  # False: the codec has no NACK (RFC 4585 feedback not negotiated)
        self.nacked = 0  # sequence numbers sent in NACKs, cumulative
        self.recovered = 0  # missing ones that arrived (after a NACK, or just late)
        self.given_up = 0  # lost for good, cumulative

    def reset(self) -> None:
        self._missing.clear()
        self._highest = None
        self._lost.clear()

    def seen(self, seq: int, now: float) -> None:
        """Record an arrival: a jump forward leaves its skipped numbers missing; a late arrival is
        no longer missing."""
        if not self.active:
            return
        if self._highest is None:
            self._highest = seq
            return
        d = seq_delta(seq, self._highest)
        if d > 0:
            if 1 < d <= self.MAX_GAP:
                for k in range(1, d):
                    self._missing[(self._highest + k) & 0xFFFF] = [now, float("-inf"), 0.0]
            elif d > self.MAX_GAP:
                self._missing.clear()
            self._highest = seq
        elif d < 0 and self._missing.pop(seq, None) is not None:
            self.recovered += 1

    @property
    def waiting(self) -> bool:
        """Whether anything is missing or newly given up (:meth:`due` has work)."""
        return bool(self._missing or self._lost)

    def _interval(self, tries: float) -> float:
        """Seconds from try number ``tries`` to the next."""
        return self._retry_s * (1 + (tries - 1) / 2)

    def due(self, now: float) -> list[int]:
        """The sequence numbers to NACK now (and count them as tried); those given up on go to
        :meth:`take_lost`."""
        if not self._missing:
            return []
        out: list[int] = []
        for seq, state in list(self._missing.items()):
            first, last, tries = state
            if tries and now - last < self._interval(tries) and now - first < self._give_up_s:
                continue
            if tries >= self._max_tries or now - first >= self._give_up_s:
                del self._missing[seq]
                self._lost.append(seq)
                self.given_up += 1
                continue
            state[1] = now
            state[2] = tries + 1
            out.append(seq)
        self.nacked += len(out)
        return out

    def take_lost(self) -> list[int]:
        """Sequence numbers given up on since the last call."""
        lost, self._lost = self._lost, []
        return lost

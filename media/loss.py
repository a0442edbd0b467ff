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
    """Sequence numbers missing from a publisher's stream, each NACKed at most ``max_tries`` times,
    ``retry_s`` apart, and forgotten after ``give_up_s`` or when it arrives.

    Sequence numbers here are the publisher's own (16-bit). Runs without a task: :meth:`due` is
    called as packets arrive, and a stream without packets has nothing to recover.
    """

    MAX_GAP = 256  # a jump further than this is a restart or a burst beyond the cache: not NACKed

    def __init__(self, retry_s: float = 0.1, max_tries: int = 3, give_up_s: float = 1.0) -> None:
        self._retry_s = retry_s
        self._max_tries = max_tries
        self._give_up_s = give_up_s
        self._missing: dict[int, list[float]] = {}  # seq -> [first missed at, last NACKed at, tries]
        self._highest: int | None = None
        self.nacked = 0  # sequence numbers sent in NACKs, cumulative
        self.recovered = 0

    def reset(self) -> None:
        self._missing.clear()
        self._highest = None

    def seen(self, seq: int, now: float) -> None:
        """Record an arrival: a jump forward leaves its skipped numbers missing; a late arrival is
        no longer missing (whether or not it was still being NACKed)."""
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

    def due(self, now: float) -> list[int]:
        """The sequence numbers to NACK now (and count them as tried)."""
        if not self._missing:
            return []
        out: list[int] = []
        for seq, state in list(self._missing.items()):
            first, last, tries = state
            if now - first > self._give_up_s or tries >= self._max_tries:
                if now - last >= self._retry_s:
                    del self._missing[seq]
                continue
            if now - last >= self._retry_s:
                state[1] = now
                state[2] = tries + 1
                out.append(seq)
        self.nacked += len(out)
        return out

"""Loss recovery of the packet engine: the packet cache that answers viewers' NACKs, the limit on
how much of that one viewer gets, and the NACK tracker that asks a publisher again for the packets
it lost."""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

from . import _dataplane
from .rtpwire import seq_delta

# What one viewer's NACKs may cost (RetransmitLimit). aiortc viewers NACK every packet still
# missing again each time a new gap appears; answered in full that was ~1.4 retransmissions per
# forwarded packet on a 5%-loss link.
# Copies of one packet per viewer: three lost copies in a row (~0.3 s) mean a link that loses
# most of them, and the frame is due by then; the viewer's PLI gets a keyframe.
RTX_MAX_TRIES = 3
# Not again within about a round trip: an earlier copy may still be on its way. A constant: the
# packet engine rewrites the viewers' SRs, so aiortc's LSR/DLSR round trip never matches; 4G
# round trips are ~50-150 ms, and mediasoup assumes 100 ms as long as it knows none.
RTX_MIN_INTERVAL_S = 0.1
# Retransmitted bytes per viewer at most this share of the bytes forwarded to it over the last
# window: a broken viewer cannot cost more than twice its forwarding (libwebrtc's sender bounds
# its retransmissions by its target bitrate likewise). Half was too little on a reordering link:
# viewers NACK every overtaken packet, so ~45% of what was forwarded went again on the lossy
# test's link (5% loss, 80 ± 40 ms), the budget was spent most of the time and real losses waited
# behind it; the viewer's longest freeze, median of 10-12 runs, went from 0.56 s to 0.28 s with
# the whole share (docs/benchmarks.md, "Lossy 4G: the retransmission budget").
RTX_BUDGET_SHARE = 1.0
RTX_BUDGET_WINDOW_S = 1.0
# ... but always this much per window (two full-size video packets): a viewer that has just
# started has had little forwarded yet and its first losses are still repaired.
RTX_BUDGET_FLOOR_BYTES = 2400
RTX_FORGET_S = 2.0  # a packet's tries are kept this long: longer than the cache holds it (1.5 s)
_MARK_EVERY_S = 0.1  # the forwarded byte count is noted at most this often (≤ 11 marks per window)


class CachedPacket(NamedTuple):
    sequence_number: int  # the stream's continuous (forwarded) sequence number
    timestamp: int
    marker: bool
    payload: bytes


_dataplane.use_cached_packet(CachedPacket)  # what the native cache's get() returns


class PacketCache:
    """The last ``size`` forwarded packets of one stream, by sequence number (512 ≈ 5 s of
    1 Mbit/s video), and with ``max_age_s`` none older than that: a NACK comes within a round
    trip, and 512 packets of video held ~0.6 MB per stream. The reference of
    :class:`media._dataplane.PacketCache`, the native data plane's (the same in C arrays)."""

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


class NackTracker(_dataplane.NackCore):
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
    called as packets arrive, and by the ingress's timer at :attr:`due_at` while something is
    missing and no packet comes (the last packets before a publisher goes quiet).

    Its fields live in :class:`media._dataplane.NackCore` (attributes here as anywhere); the native
    data plane does :meth:`seen`, the reference, in C on them.
    """

    MAX_GAP = 256  # a jump further than this is a restart or a burst beyond the cache: not NACKed

    def __init__(self, retry_s: float = 0.1, max_tries: int = 4, give_up_s: float = 1.0) -> None:
        super().__init__()
        self._retry_s = retry_s
        self._max_tries = max_tries
        self._give_up_s = give_up_s
        self._missing: dict[int, list[float]] = {}  # seq -> [first missed at, last NACKed at, tries]
        self._highest: int | None = None
        self._lost: list[int] = []  # given up since the last take_lost()
        self._due_at = math.inf  # no entry is due before this (due() does nothing until then)
        self.active = True  # False: the codec has no NACK (RFC 4585 feedback not negotiated)
        self.nacked = 0  # sequence numbers sent in NACKs, cumulative
        self.recovered = 0  # missing ones that arrived (after a NACK, or just late)
        self.given_up = 0  # lost for good, cumulative

    def reset(self) -> None:
        self._missing.clear()
        self._highest = None
        self._lost.clear()
        self._due_at = math.inf

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
                self._due_at = min(self._due_at, now)
            elif d > self.MAX_GAP:
                self._missing.clear()
            self._highest = seq
        elif d < 0 and self._missing.pop(seq, None) is not None:
            self.recovered += 1

    @property
    def waiting(self) -> bool:
        """Whether anything is missing or newly given up."""
        return bool(self._missing or self._lost)

    @property
    def due_at(self) -> float:
        """When :meth:`due` next has something to NACK or give up (inf: nothing is missing)."""
        return self._due_at if self._missing else math.inf

    def has_work(self, now: float) -> bool:
        """Whether :meth:`due` or :meth:`take_lost` would return anything at ``now``: the check
        made per packet, constant time however many packets are missing."""
        return bool(self._lost) or (bool(self._missing) and now >= self._due_at)

    def _interval(self, tries: float) -> float:
        """Seconds from try number ``tries`` to the next."""
        return self._retry_s * (1 + (tries - 1) / 2)

    def due(self, now: float) -> list[int]:
        """The sequence numbers to NACK now (and count them as tried); those given up on go to
        :meth:`take_lost`."""
        if not self._missing or now < self._due_at:
            return []
        out: list[int] = []
        next_at = math.inf
        give_up_s = self._give_up_s
        for seq, state in list(self._missing.items()):
            first, last, tries = state
            if tries:
                interval = self._interval(tries)
                if now - last < interval and now - first < give_up_s:
                    next_at = min(next_at, last + interval, first + give_up_s)
                    continue
            if tries >= self._max_tries or now - first >= give_up_s:
                del self._missing[seq]
                self._lost.append(seq)
                self.given_up += 1
                continue
            state[1] = now
            state[2] = tries + 1
            next_at = min(next_at, now + self._interval(tries + 1), first + give_up_s)
            out.append(seq)
        self._due_at = next_at
        self.nacked += len(out)
        return out

    def take_lost(self) -> list[int]:
        """Sequence numbers given up on since the last call."""
        lost, self._lost = self._lost, []
        return lost


class RetransmitLimit:
    """Which of one viewer's NACKs are answered. A packet goes to the viewer again at most
    ``max_tries`` times, not twice within ``min_interval_s``; and the bytes retransmitted over the
    last ``window_s`` stay within ``share`` of those forwarded to it (at least ``floor_bytes``).
    Other NACKs are suppressed and counted: ``repeats`` (a packet too soon or too often),
    ``over_budget`` (the budget spent).

    Lives only on the NACK path: the bytes forwarded come from the viewer's own running count
    (``forwarded``), noted here as NACKs arrive; over a stretch without NACKs longer than the
    window, the window's share of them is taken at their average rate. Sequence numbers are the
    viewer's own; times are seconds on any one clock.
    """

    def __init__(self, now: float, *, max_tries: int = RTX_MAX_TRIES, min_interval_s: float = RTX_MIN_INTERVAL_S,
                 share: float = RTX_BUDGET_SHARE, window_s: float = RTX_BUDGET_WINDOW_S,
                 floor_bytes: int = RTX_BUDGET_FLOOR_BYTES) -> None:
        self._max_tries = max_tries
        self._min_interval_s = min_interval_s
        self._share = share
        self._window_s = window_s
        self._floor = floor_bytes
        self._tries: dict[int, list[float]] = {}  # seq -> [first sent at, last sent at, times], oldest first
        self._sent: deque[tuple[float, int]] = deque()  # (time, bytes) retransmitted within the window
        self._sent_bytes = 0
        self._marks: deque[tuple[float, int]] = deque([(now, 0)])  # (time, bytes forwarded by then)
        self.repeats = 0
        self.over_budget = 0

    @property
    def suppressed(self) -> int:
        """NACKed packets not sent again, either way."""
        return self.repeats + self.over_budget

    def admit(self, seq: int, size: int, forwarded: int, now: float) -> bool:
        """Whether to send ``seq`` (``size`` bytes) again now; ``forwarded``: bytes forwarded to
        this viewer so far. True counts as sent."""
        tries = self._tries
        while tries:
            oldest = next(iter(tries))
            if tries[oldest][0] > now - RTX_FORGET_S:
                break
            del tries[oldest]
        state = tries.get(seq)
        if state is not None and (state[2] >= self._max_tries or now - state[1] < self._min_interval_s):
            self.repeats += 1
            return False
        if self._sent_bytes + size > self._allowance(forwarded, now):
            self.over_budget += 1
            return False
        if state is None:
            tries[seq] = [now, now, 1.0]
        else:
            state[1] = now
            state[2] += 1
        self._sent.append((now, size))
        self._sent_bytes += size
        return True

    def _allowance(self, forwarded: int, now: float) -> float:
        """Bytes that may be retransmitted in the window ending now (those already sent in it
        included)."""
        start = now - self._window_s
        sent = self._sent
        while sent and sent[0][0] <= start:
            self._sent_bytes -= sent.popleft()[1]
        marks = self._marks
        if now - marks[-1][0] >= _MARK_EVERY_S:
            marks.append((now, forwarded))
        while len(marks) > 1 and marks[1][0] <= start:
            marks.popleft()
        since, base = marks[0]  # the last mark at or before the window's start, if any
        recent = float(forwarded - base)
        if now - since > self._window_s:
            recent *= self._window_s / (now - since)
        return max(self._share * recent, self._floor)

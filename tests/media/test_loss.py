"""The packet cache answers by exact sequence number; the NACK tracker asks again at growing
intervals, a few times, then gives up (and says so); a viewer's retransmissions stay within their
limits (more in tests/media/test_packets.py, on a real stream)."""

from __future__ import annotations

from bench.nack_tracker import ScanEveryPacket
from media.loss import RTX_BUDGET_FLOOR_BYTES, RTX_FORGET_S, CachedPacket, NackTracker, PacketCache, RetransmitLimit


def test_cache_returns_only_the_packet_with_that_number() -> None:
    cache = PacketCache(size=4)
    for seq in range(65533, 65533 + 6):
        cache.put(CachedPacket(seq & 0xFFFF, seq, False, b"%d" % seq))
    assert cache.get(65533) is None  # overwritten by 65537 & 0xFFFF
    hit = cache.get(2)
    assert hit is not None and hit.payload == b"65538"


def test_gaps_are_nacked_without_duplicates_at_growing_intervals_then_given_up() -> None:
    t = NackTracker(retry_s=0.1, max_tries=4, give_up_s=1.0)
    t.seen(65534, 0.0)
    t.seen(65535, 0.0)
    t.seen(2, 0.0)  # 0 and 1 are missing (across the wrap)
    assert sorted(t.due(0.0)) == [0, 1]
    assert t.due(0.05) == []  # not again before retry_s
    t.seen(0, 0.06)  # recovered
    t.seen(0, 0.07)  # a duplicate changes nothing
    tries = [now for now in (0.1, 0.2, 0.26, 0.4, 0.47, 0.6, 0.7) if t.due(now) == [1]]
    assert tries == [0.1, 0.26, 0.47]  # at least 0.1, 0.15, 0.2 s apart: four tries in all
    assert t.take_lost() == []
    assert t.due(0.73) == []  # the fifth try would be due: lost for good
    assert t.take_lost() == [1] and t.take_lost() == []
    t.seen(1, 0.8)  # too late to count as recovered
    assert t.recovered == 1 and t.nacked == 5 and t.given_up == 1
    t.seen(2 + 1000, 0.8)  # a jump beyond MAX_GAP is a restart, not a loss
    assert t.due(0.8) == [] and not t.waiting


def test_a_packet_missing_too_long_is_given_up_whatever_its_tries() -> None:
    """``give_up_s`` bounds the wait when packets arrive too seldom for the tries to happen."""
    t = NackTracker(retry_s=0.1, max_tries=4, give_up_s=1.0)
    t.seen(10, 0.0)
    t.seen(12, 0.0)
    assert t.due(0.0) == [11]
    assert t.due(1.0) == [] and t.take_lost() == [11]


def test_an_inactive_tracker_keeps_nothing() -> None:
    """A codec without NACK feedback: losses are neither NACKed nor remembered."""
    t = NackTracker()
    t.active = False
    t.seen(1, 0.0)
    t.seen(50, 0.0)
    assert not t.waiting and t.due(5.0) == [] and t.take_lost() == []


def test_cache_lets_packets_older_than_its_age_go() -> None:
    cache = PacketCache(size=512, max_age_s=1.0)
    for k in range(300):  # 128 packets a second (times exact in binary)
        cache.put(CachedPacket(k, 0, False, b"p"), now=k / 128)
    held = [k for k in range(300) if cache.get(k) is not None]
    assert held == list(range(299 - 128, 300))  # the last second (and the one put exactly 1 s before)
    cache.clear()
    assert cache.get(299) is None
    cache.put(CachedPacket(5, 0, False, b"p"), now=100.0)
    assert cache.get(5) is not None


def test_retransmit_budget_after_a_quiet_stretch_is_one_window_at_the_average_rate() -> None:
    """No NACK for 5 s at 100 kB/s forwarded: a burst of NACKs then gets half of one second's
    bytes, not of five; a second later the window has moved on and the next half is there."""
    limit = RetransmitLimit(0.0, share=0.5, window_s=1.0)
    assert sum(limit.admit(seq, 1000, 500_000, 5.0) for seq in range(200)) == 50
    assert limit.over_budget == 150 and limit.repeats == 0
    assert sum(limit.admit(seq, 1000, 600_000, 6.0) for seq in range(200, 400)) == 50


def test_a_viewer_that_just_started_still_gets_its_first_losses_repaired() -> None:
    limit = RetransmitLimit(0.0)
    admitted = sum(limit.admit(seq, 1000, 1000, 0.01) for seq in range(10))
    assert admitted == RTX_BUDGET_FLOOR_BYTES // 1000


def test_a_packets_tries_are_forgotten_after_the_cache_has_let_it_go() -> None:
    """The per-packet state stays small: after RTX_FORGET_S a sequence number is new again (the
    16-bit numbers come round, and the cache no longer holds the old packet)."""
    limit = RetransmitLimit(0.0, max_tries=3, min_interval_s=0.1)
    assert [limit.admit(7, 100, 10**6, t) for t in (0.0, 0.1, 0.2, 0.3)] == [True, True, True, False]
    assert limit.admit(7, 100, 10**6, RTX_FORGET_S + 0.01)


def test_between_tries_the_per_packet_check_does_no_work() -> None:
    """With many packets missing (a burst on 4G), the check made for every arriving packet is
    constant time: ``due`` is called only when something is due, at ``due_at``."""
    t = NackTracker(retry_s=0.1, max_tries=4, give_up_s=1.0)
    t.seen(0, 0.0)
    t.seen(201, 0.0)  # 200 missing
    assert t.has_work(0.0) and len(t.due(0.0)) == 200
    assert t.due_at == 0.1 and not t.has_work(0.05) and t.due(0.05) == []
    t.seen(5, 0.06)  # one arrives late: recovered, the rest still due at 0.1
    assert t.has_work(0.1) and len(t.due(0.1)) == 199
    assert abs(t.due_at - 0.25) < 1e-9  # the second retry is 0.15 s after the first
    t.seen(202, 0.12)
    t.seen(204, 0.12)  # a new gap is due at once
    assert t.has_work(0.12) and t.due(0.12) == [203]


def test_the_shortcut_changes_nothing_the_tracker_decides() -> None:
    """Random arrivals (loss, reordering, late retransmissions) at random times: the tracker with
    its shortcut NACKs and gives up exactly what one that scans every time does."""
    import random

    rng = random.Random(7)
    for _ in range(50):
        fast, slow = NackTracker(), ScanEveryPacket()
        now, seq = 0.0, rng.randrange(65536)
        for _ in range(400):
            now += rng.choice((0.0, 0.001, 0.01, 0.03, 0.12))
            seq = (seq + rng.choice((1, 1, 1, 2, 3, 5, -1, -4))) & 0xFFFF
            for t in (fast, slow):
                t.seen(seq, now)
            got = sorted(fast.due(now)) if fast.has_work(now) else []
            assert got == sorted(slow.due(now)), now
            assert fast.take_lost() == slow.take_lost()
        assert (fast.nacked, fast.given_up, fast.recovered) == (slow.nacked, slow.given_up, slow.recovered)

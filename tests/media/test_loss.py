"""The packet cache answers by exact sequence number; the NACK tracker asks again, a few times."""

from __future__ import annotations

from media.loss import CachedPacket, NackTracker, PacketCache


def test_cache_returns_only_the_packet_with_that_number() -> None:
    cache = PacketCache(size=4)
    for seq in range(65533, 65533 + 6):
        cache.put(CachedPacket(seq & 0xFFFF, seq, False, b"%d" % seq))
    assert cache.get(65533) is None  # overwritten by 65537 & 0xFFFF
    hit = cache.get(2)
    assert hit is not None and hit.payload == b"65538"


def test_gaps_are_nacked_without_duplicates_and_given_up() -> None:
    t = NackTracker(retry_s=0.1, max_tries=3, give_up_s=1.0)
    t.seen(65534, 0.0)
    t.seen(65535, 0.0)
    t.seen(2, 0.0)  # 0 and 1 are missing (across the wrap)
    assert sorted(t.due(0.0)) == [0, 1]
    assert t.due(0.05) == []  # not again before retry_s
    t.seen(0, 0.06)  # recovered
    t.seen(0, 0.07)  # a duplicate changes nothing
    assert t.due(0.21) == [1]
    assert t.due(0.32) == [1]
    assert t.due(0.43) == [] and t.due(0.6) == []  # three tries, then given up
    t.seen(1, 0.7)  # too late to count as recovered
    assert t.recovered == 1 and t.nacked == 4
    t.seen(2 + 1000, 0.8)  # a jump beyond MAX_GAP is a restart, not a loss
    assert t.due(0.8) == []


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

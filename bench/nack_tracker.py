"""Cost of the NACK tracker's per-packet check while packets are missing (a 4G loss burst).

    python -m bench.nack_tracker [--packets 20000] [--rounds 5]

A publisher stream at ~3300 packets/s with 0, 20, 100 or 250 packets missing (each NACKed, then
retried every 0.1-0.25 s until given up): µs per arriving packet for the tracker
(:class:`media.loss.NackTracker`, which looks at its missing packets only when one is due) and, in
the same run, for the same tracker made to scan them on every packet (what it did before). Medians
of ``--rounds``.
"""

from __future__ import annotations

import argparse
import statistics
import time

from media.loss import NackTracker


class ScanEveryPacket(NackTracker):
    """The baseline: every arriving packet scans every missing one."""

    def has_work(self, now: float) -> bool:
        return self.waiting

    def due(self, now: float) -> list[int]:
        self._due_at = float("-inf")
        return super().due(now)


def per_packet_us(tracker: NackTracker, missing: int, packets: int) -> float:
    now = 0.0
    tracker.seen(0, now)
    tracker.seen(missing + 1, now)
    seq = missing + 1
    t0 = time.perf_counter()
    for _ in range(packets):
        now += 0.0003
        seq = (seq + 1) & 0xFFFF
        tracker.seen(seq, now)
        if tracker.has_work(now):
            tracker.due(now)
            tracker.take_lost()
    return (time.perf_counter() - t0) / packets * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print("missing | tracker µs/packet | scan every packet µs/packet | ratio")
    for missing in (0, 20, 100, 250):
        fast = statistics.median(per_packet_us(NackTracker(), missing, args.packets) for _ in range(args.rounds))
        slow = statistics.median(per_packet_us(ScanEveryPacket(), missing, args.packets) for _ in range(args.rounds))
        print(f"{missing:7d} | {fast:17.2f} | {slow:27.2f} | {slow / fast:5.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

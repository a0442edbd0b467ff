"""One Recording driven directly: timestamps stay monotonic when a device clock jumps."""

from __future__ import annotations

import threading
from pathlib import Path

from field_client.encoded_loop import EncodedLoop
from recordings.ledger import Ledger
from recordings.recording import Recording, RecordingInfo
from tests.recordings.archive_support import ffprobe, of_type, packets


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_device_clock_jumps_are_re_anchored_to_the_server_clock(tmp_path: Path, vp8_loop: EncodedLoop) -> None:
    archive = tmp_path / "archive"
    ledger = Ledger(archive, tmp_path / "key.pem")
    ledger.open()
    clock = FakeClock()
    info = RecordingInfo("rec-test", "bc-01", None, None, (), "standard", "node", "vp8", None)
    closed = threading.Event()
    rec = Recording(info, archive / "recordings" / "rec-test", archive, ledger, segment_s=60.0, queue_frames=1000,
                    where="test", on_event=lambda kind, _: closed.set() if kind == "closed" else None, clock=clock)
    pts = 5_000_000
    for i in range(90):
        if i == 30:
            pts -= 90_000 * 20  # the device's clock goes back 20 s
        if i == 60:
            pts += 90_000 * 3600  # then an hour forward
        delta, key = vp8_loop.frames[i % len(vp8_loop.frames)]
        rec.offer("video", key if i == 0 else delta, pts, i == 0)
        pts += 3000
        clock.now += 1 / 30
    rec.close("test over")
    assert closed.wait(10)
    ledger.close()
    [seg] = of_type(archive, "segment_sealed")
    path = archive / seg["path"]
    ffprobe(path)
    times = [t for kind, _, t in packets(path) if kind == "video"]
    assert len(times) == 90
    steps = [b - a for a, b in zip(times, times[1:])]
    # Strictly increasing, and no step shows the jumps: the timeline follows the server clock.
    assert min(steps) > 0 and max(steps) < 0.1, (min(steps), max(steps))
    assert abs(times[-1] - times[0] - 89 / 30) < 0.1

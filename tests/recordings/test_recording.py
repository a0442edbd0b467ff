"""One Recording driven directly: timestamps stay monotonic when a device clock jumps."""

from __future__ import annotations

import itertools
import subprocess
import threading
from pathlib import Path

from field_client.encoded_loop import EncodedAudioLoop, EncodedLoop
from recordings.ledger import Ledger
from recordings.recording import Recording
from recordings.recording_info import RecordingInfo
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
    steps = [b - a for a, b in itertools.pairwise(times)]
    # Strictly increasing, and no step shows the jumps: the timeline follows the server clock.
    assert min(steps) > 0 and max(steps) < 0.1, (min(steps), max(steps))
    assert abs(times[-1] - times[0] - 89 / 30) < 0.1


def test_a_due_segment_asks_the_publisher_for_a_keyframe_and_is_cut_on_it(tmp_path: Path,
                                                                         vp8_loop: EncodedLoop) -> None:
    archive = tmp_path / "archive"
    ledger = Ledger(archive, tmp_path / "key.pem")
    ledger.open()
    clock = FakeClock()
    start = clock.now
    info = RecordingInfo("rec-due", "bc-01", None, None, (), "standard", "node", "vp8", None)
    closed = threading.Event()
    asked: list[int] = []  # video frames written when the writer asked
    recording: list[Recording] = []
    rec = Recording(info, archive / "recordings" / "rec-due", archive, ledger, segment_s=1.0, queue_frames=1000,
                    where="test", on_event=lambda kind, _: closed.set() if kind == "closed" else None, clock=clock,
                    request_keyframe=lambda: asked.append(recording[0].stats.frames["video"]))
    recording.append(rec)
    for i in range(90):  # 3 s at 30 fps; the publisher's only keyframes are frames 0 and 60
        clock.now = start + i / 30
        delta, key = vp8_loop.frames[i % len(vp8_loop.frames)]
        rec.offer("video", key if i in (0, 60) else delta, 3000 * i, i in (0, 60))
    rec.close("test over")
    assert closed.wait(10)
    ledger.close()
    # Due after 1 s (frame 30): asked then and half a second later, never before, and cut at frame 60.
    assert len(asked) == 2 and asked[0] == 30 and 45 <= asked[1] <= 46, asked
    assert [s["frames"]["video"] for s in of_type(archive, "segment_sealed")] == [60, 30]


def test_late_and_reordered_audio_at_cuts_plays_clean(tmp_path: Path, vp8_loop: EncodedLoop,
                                                      opus_loop: EncodedAudioLoop) -> None:
    """On a lossy link audio reaches the recorder up to ~0.3 s after the video of the same moment
    (its jitter buffer waits out losses) and sometimes out of order. Audio from before a cut goes
    to the segment before it; a packet older than audio already written is dropped, never moved
    to overlap sound already there (ffmpeg: "non monotonically increasing dts")."""
    archive = tmp_path / "archive"
    ledger = Ledger(archive, tmp_path / "key.pem")
    ledger.open()
    clock = FakeClock()
    start = clock.now
    info = RecordingInfo("rec-late", "bc-01", None, None, (), "standard", "node", "vp8", "opus")
    closed = threading.Event()
    rec = Recording(info, archive / "recordings" / "rec-late", archive, ledger, segment_s=1.0, queue_frames=4000,
                    where="test", on_event=lambda kind, _: closed.set() if kind == "closed" else None, clock=clock)
    lag_s = 0.3
    events: list[tuple[float, str, int]] = []  # (arrival, kind, index)
    for i in range(120):  # 4 s of video, a keyframe every second: cuts at 1, 2 and 3 s
        events.append((i / 30, "video", i))
    for j in range(200):  # 4 s of audio, 20 ms packets; after the first half second they arrive lag_s late
        events.append((j / 50 + 0.001 + (lag_s if j >= 25 else 0.0), "audio", j))
    swapped = {51, 101, 151}  # these audio packets arrive after the one that follows them
    events = [(t + (0.021 if kind == "audio" and n in swapped else 0.0), kind, n) for t, kind, n in events]
    events.sort()
    for t, kind, n in events:
        clock.now = start + t
        if kind == "video":
            delta, key = vp8_loop.frames[n % len(vp8_loop.frames)]
            rec.offer("video", key if n % 30 == 0 else delta, 3000 * n, n % 30 == 0)
        else:
            rec.offer("audio", opus_loop.packets[n % len(opus_loop.packets)], 960 * n, True)
    rec.close("test over")
    assert closed.wait(10)
    ledger.close()
    sealed = of_type(archive, "segment_sealed")
    assert [s["frames"]["video"] for s in sealed] == [30, 30, 30, 30]
    audio = [s["frames"]["audio"] for s in sealed]
    assert sum(audio) == 200 - len(swapped), audio  # only the three overtaken packets are dropped
    assert audio == [50, 49, 49, 49], audio  # each segment holds its own second of sound
    for seg in sealed:
        path = archive / seg["path"]
        ffprobe(path)
        check = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 0 and check.stderr == "", (seg["path"], check.stderr)
        times = [t for kind, _, t in packets(path) if kind == "audio"]
        assert times == sorted(times) and len(set(times)) == len(times), seg["path"]

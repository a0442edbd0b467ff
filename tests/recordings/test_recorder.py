"""Recording from the live relay: real aiortc publishers over WHIP into an in-process server."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from pathlib import Path
from typing import Any

import aiohttp

from dispatch_server.appkeys import ARCHIVE
from field_client.encoded_loop import EncodedAudioLoop, EncodedLoop
from tests.conftest import LiveServer
from tests.recordings.archive_support import ffprobe, of_type, packets, segment_paths
from tests.support.peers import frame_digest, make_publisher, whip_publish

FAST = {"segment_s": 3.0, "reconnect_grace_s": 0.3, "sign_interval_s": 5.0, "min_free_bytes": 0}


class ArchiveEvents:
    """Waits on what the archive's writer threads report (sealed, closed ...)."""

    def __init__(self, live: LiveServer) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Event()
        live.app[ARCHIVE].listeners.append(self._on)

    def _on(self, kind: str, detail: dict[str, Any]) -> None:
        self.seen.append((kind, detail))
        self._changed.set()

    async def wait(self, kind: str, count: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
        async def until() -> list[dict[str, Any]]:
            while True:
                found = [d for k, d in self.seen if k == kind]
                if len(found) >= count:
                    return found
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(until(), timeout)


async def stop_sending(pub: Any) -> None:
    """Stop the publisher's tracks, so what was sent is final, and let the last frames land."""
    for track in (pub.video, pub.audio):
        if track is not None:
            track.stop()
    await asyncio.sleep(0.5)


async def unpublish(http: aiohttp.ClientSession, live: LiveServer, pub: Any, token: str) -> None:
    async with http.delete(live.url + pub.location, headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200, await r.text()


def verify_archive(archive: Path) -> Any:
    from recordings.verify import verify_archive as verify

    return verify(archive, allow_unanchored=True)


async def test_ten_seconds_from_aiortc_are_recorded_byte_identical(
        make_live: Any, http: aiohttp.ClientSession, vp8_loop: EncodedLoop, opus_loop: EncodedAudioLoop) -> None:
    live: LiveServer = await make_live(archive=FAST)
    events = ArchiveEvents(live)
    token = live.add_unit("bc-rec")
    pub = await make_publisher(vp8_loop, opus_loop)
    await whip_publish(http, live.url, "bc-rec", token, pub)
    await asyncio.sleep(10.0)
    await stop_sending(pub)
    await unpublish(http, live, pub, token)
    await pub.close()
    closed = await events.wait("closed")
    rid = closed[0]["recording_id"]
    archive = live.settings.archive_dir

    files = segment_paths(archive, rid)
    assert len(files) >= 3, "10 s in 3 s segments makes at least 3 sealed segments"
    assert sorted(p.name for p in files[0].parent.iterdir()) == sorted([p.name for p in files] + ["recording.json"])
    video: list[str] = []
    audio: list[str] = []
    times: list[float] = []
    duration = 0.0
    for path in files:
        probe = ffprobe(path)
        kinds = {s["codec_type"]: s for s in probe["streams"]}
        assert kinds["video"]["codec_name"] == "vp8"
        assert (kinds["video"]["width"], kinds["video"]["height"]) == (640, 480)
        assert kinds["audio"]["codec_name"] == "opus"
        duration += float(probe["format"]["duration"])
        for kind, data, t in packets(path):
            if kind == "video":
                video.append(frame_digest("video/VP8", data))
                times.append(t)
            else:
                audio.append(hashlib.sha256(data).hexdigest())
    sent_video = [d for d, _ in pub.sent]
    # Every frame the publisher sent is in the recording, byte for byte, in order.
    assert video == sent_video, f"recorded {len(video)} video frames, sent {len(sent_video)}"
    # Audio: recording starts with the first video keyframe (<= 0.2 s of audio before it is not
    # recorded) and aiortc's audio jitter buffer keeps its last 4 packets (80 ms) when a publisher
    # stops; everything in between is there, byte for byte and in order.
    start = next((i for i in range(12) if pub.sent_audio[i:i + len(audio)] == audio), None)
    assert start is not None, "recorded audio is a contiguous run of the sent packets"
    assert len(pub.sent_audio) - (start + len(audio)) <= 5
    assert times == sorted(times) and len(set(times)) == len(times), "timestamps strictly increase across segments"
    sent_s = len(sent_video) / vp8_loop.spec.fps
    assert abs(duration - sent_s) <= 0.5, f"recorded {duration:.2f} s for {sent_s:.2f} s sent"

    opened = of_type(archive, "recording_opened", rid)[0]
    assert opened["unit_id"] == "bc-rec" and opened["video_codec"] == "vp8" and opened["audio_codec"] == "opus"
    assert of_type(archive, "gap", rid) == [], "a recording that ended normally has no gap"
    await live.app[ARCHIVE].close()  # signs the final tree head
    report = verify_archive(archive)
    assert report.failures == [], report.failures


async def test_publisher_away_for_five_seconds_is_one_recording_with_one_gap(
        make_live: Any, http: aiohttp.ClientSession, vp8_loop: EncodedLoop, opus_loop: EncodedAudioLoop) -> None:
    live: LiveServer = await make_live(archive={**FAST, "reconnect_grace_s": 30.0})
    events = ArchiveEvents(live)
    token = live.add_unit("bc-gap")
    first = await make_publisher(vp8_loop, opus_loop)
    await whip_publish(http, live.url, "bc-gap", token, first)
    await events.wait("sealed", 1)
    # The link drops: the publisher vanishes without saying goodbye.
    await first.close()
    await asyncio.sleep(5.0)
    second = await make_publisher(vp8_loop, opus_loop)
    await whip_publish(http, live.url, "bc-gap", token, second)
    sealed_before = len([1 for k, _ in events.seen if k == "sealed"])
    await events.wait("sealed", sealed_before + 2)
    await stop_sending(second)
    await unpublish(http, live, second, token)
    await second.close()
    await live.app[ARCHIVE].close()
    archive = live.settings.archive_dir

    opened = of_type(archive, "recording_opened")
    assert len(opened) == 1, "one recording spans the reconnect"
    rid = opened[0]["recording_id"]
    gaps = of_type(archive, "gap", rid)
    assert len(gaps) == 1 and gaps[0]["cause"] == "link_lost"
    assert 4.0 <= gaps[0]["seconds"] <= 10.0, gaps
    times = {"video": [], "audio": []}  # type: dict[str, list[float]]
    for path in segment_paths(archive, rid):
        ffprobe(path)
        for kind, _, t in packets(path):
            times[kind].append(t)
    for kind, ts in times.items():
        assert ts == sorted(ts) and len(set(ts)) == len(ts), f"{kind} timestamps are monotonic across the reconnect"
    # The 5 s away shows in the timeline as well as in the ledger.
    jumps = [b - a for a, b in itertools.pairwise(times["video"])]
    assert max(jumps) >= 4.0
    assert verify_archive(archive).failures == []


async def test_unit_without_viewers_is_recorded_and_h264_too(
        make_live: Any, http: aiohttp.ClientSession, h264_loop: EncodedLoop) -> None:
    live: LiveServer = await make_live(archive=FAST)
    events = ArchiveEvents(live)
    token = live.add_unit("vt-h264", "vehicle")
    pub = await make_publisher(h264_loop, None, codec="h264")
    await whip_publish(http, live.url, "vt-h264", token, pub)
    await asyncio.sleep(4.0)
    await stop_sending(pub)
    await unpublish(http, live, pub, token)
    await pub.close()
    rid = (await events.wait("closed"))[0]["recording_id"]
    archive = live.settings.archive_dir
    video = []
    for path in segment_paths(archive, rid):
        assert path.suffix == ".mkv"
        probe = ffprobe(path)
        assert [s["codec_name"] for s in probe["streams"]] == ["h264"]
        video += [frame_digest("video/H264", _annexb(d)) for k, d, _ in packets(path) if k == "video"]
    assert video == [d for d, _ in pub.sent]


def _annexb(avcc: bytes) -> bytes:
    """Matroska stores H.264 length-prefixed; turn it back into start codes to compare NAL units."""
    if avcc.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")):
        return avcc
    out, i = b"", 0
    while i + 4 <= len(avcc):
        n = int.from_bytes(avcc[i:i + 4], "big")
        out += b"\x00\x00\x00\x01" + avcc[i + 4:i + 4 + n]
        i += 4 + n
    return out




async def test_recording_is_linked_to_case_track_and_instructions(
        make_live: Any, http: aiohttp.ClientSession, vp8_loop: EncodedLoop, opus_loop: EncodedAudioLoop) -> None:
    import json
    import time

    from tests.dispatch_server.test_actions import ACTION, api
    from tests.support.unit_client import RawUnit

    live: LiveServer = await make_live(archive=FAST)
    events = ArchiveEvents(live)
    token = live.add_unit("bc-01")
    live.add_unit("veh-01", "vehicle")
    live.add_user("op", "operator")
    op = await live.login("op")
    _, action = await api(http, "POST", f"{live.url}/api/actions", op, ACTION)
    status, _ = await api(http, "POST", f"{live.url}/api/actions/{action['id']}/start", op)
    assert status == 200
    unit = await RawUnit(live.url, "bc-01", token).connect()
    pub = await make_publisher(vp8_loop, opus_loop)
    try:
        await whip_publish(http, live.url, "bc-01", token, pub)
        for i in range(4):
            ack = await unit.call("position", {"lat": 38.04 + i * 1e-4, "lon": 114.51, "ts": time.time()})
            assert ack["ok"], ack
            await asyncio.sleep(0.5)
        status, sent = await api(http, "POST", f"{live.url}/api/instructions", op,
                                 {"unit": "bc-01", "type": "text", "text": "封存 现场 车辆", "ttl_s": 60})
        assert status == 201, sent
        await asyncio.sleep(1.0)
        await stop_sending(pub)
        await unpublish(http, live, pub, token)
    finally:
        await pub.close()
        await unit.close()
    rid = (await events.wait("closed"))[0]["recording_id"]
    meta = json.loads((live.settings.archive_dir / "recordings" / rid / "recording.json").read_text("utf-8"))
    assert meta["case_number"] == "（2026）冀0916执123号" and meta["action_id"] == action["id"]
    assert meta["unit_id"] == "bc-01" and meta["officers"] == ["王法警"]
    assert meta["codecs"] == {"video": "vp8", "audio": "opus"} and meta["resolution"] == [640, 480]
    assert meta["clocks"]["server_opened"] < meta["clocks"]["server_closed"]
    coords = meta["extra"]["gps_track"]["features"][0]["geometry"]["coordinates"]
    assert len(coords) == 4 and coords[0][:2] == [114.51, 38.04]
    assert [i["payload"]["text"] for i in meta["extra"]["instructions"]] == ["封存 现场 车辆"]
    assert meta["segments"] and all(s["sha256"] for s in meta["segments"])
    closed = of_type(live.settings.archive_dir, "recording_closed", rid)[0]
    blob = (live.settings.archive_dir / "recordings" / rid / "recording.json").read_bytes()
    assert closed["metadata_sha256"] == hashlib.sha256(blob).hexdigest()

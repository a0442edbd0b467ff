"""The archive survives ``kill -9`` of the server and a full disk."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dispatch_server.appkeys import ARCHIVE
from field_client.encoded_loop import EncodedAudioLoop, EncodedLoop
from recordings.verify import verify_archive
from tests.conftest import LiveServer
from tests.recordings.archive_support import entries, ffprobe, of_type, packets
from tests.recordings.test_recorder import ArchiveEvents
from tests.support.peers import make_publisher, make_viewer, whep_view, whip_publish
from tests.support.server import ServerProcess, add_unit, write_config
from tests.support.unit_client import Console
from utctime import parse_iso_millis

ARCHIVE_TOML = "[archive]\nsegment_s = 3.0\nsign_interval_s = 2.0\nmin_free_bytes = 0\nreconnect_grace_s = 30.0\n"


def archive_files(archive: Path) -> set[str]:
    return {p.relative_to(archive).as_posix() for p in (archive / "recordings").rglob("*") if p.is_file()}


async def until_open_segments_hold_frames(archive: Path, recordings: int, age_s: float = 1.5,
                                          timeout: float = 30.0) -> None:
    """Wait until each of ``recordings`` has sealed a segment and the newest cut is ``age_s`` old,
    read from the ledger of a server in another process: every open segment then holds complete
    clusters (the muxer closes one every second), which a kill tears."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                sealed = of_type(archive, "segment_sealed")
            except ValueError:  # the server is writing the last line
                sealed = []
            if len({s["recording_id"] for s in sealed}) >= recordings and \
                    time.time() - max(parse_iso_millis(s["end"]) for s in sealed) >= age_s:
                return
            await asyncio.sleep(0.05)


async def test_kill_9_during_five_recordings_loses_at_most_two_seconds(
        tmp_path: Path, http: aiohttp.ClientSession, vp8_loop: EncodedLoop, opus_loop: EncodedAudioLoop) -> None:
    config = write_config(tmp_path / "config.toml", tmp_path / "data", ARCHIVE_TOML)
    units = [f"bc-{i}" for i in range(5)]
    tokens = {u: add_unit(config, u) for u in units}
    server = ServerProcess(config).start()
    pubs = []
    try:
        for u in units:
            pub = await make_publisher(vp8_loop, opus_loop)
            await whip_publish(http, server.url, u, tokens[u], pub)
            pubs.append(pub)
        await until_open_segments_hold_frames(tmp_path / "data" / "archive", len(units))
        killed_at = time.time()
        server.kill()
    finally:
        await asyncio.gather(*(p.close() for p in pubs))
    archive = tmp_path / "data" / "archive"
    assert any(p.name.endswith(".part") for p in (archive / "recordings").rglob("*")), "segments were open at the kill"

    restarted = ServerProcess(config).start()
    assert "torn segment remuxed" in restarted.output() or "recovered" in restarted.output()
    assert restarted.stop() == 0

    assert any(s["recovered"] for s in of_type(archive, "segment_sealed")), "torn segments were recovered"
    closed = of_type(archive, "recording_closed")
    assert len(closed) == 5 and all(c["reason"] == "server_fault" for c in closed)
    sealed = of_type(archive, "segment_sealed")
    # Files on disk and the ledger match exactly: every sealed segment plus one recording.json each.
    assert archive_files(archive) == {s["path"] for s in sealed} | {
        f"recordings/{c['recording_id']}/recording.json" for c in closed}
    for opened in of_type(archive, "recording_opened"):
        rid = opened["recording_id"]
        mine = sorted((s for s in sealed if s["recording_id"] == rid), key=lambda s: s["seq"])
        assert mine, f"{rid}: nothing sealed"
        last_t = 0.0
        for seg in mine:
            ffprobe(archive / seg["path"])  # every file plays without error
            last_t = max([last_t] + [t for _, _, t in packets(archive / seg["path"])])
        recorded_until = parse_iso_millis(opened["server_time"]) + last_t
        assert killed_at - recorded_until <= 2.0, \
            f"{rid}: media ends {killed_at - recorded_until:.2f} s before the kill"
        gaps = of_type(archive, "gap", rid)
        assert [g["cause"] for g in gaps] == ["server_fault"]
    report = verify_archive(archive, allow_unanchored=True)
    assert report.failures == [], report.failures
    audit = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "dispatch-audit"), "verify", "--archive", str(archive), "--allow-unanchored",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(audit.communicate(), 120)
    assert audit.returncode == 0, output.decode()


@pytest.fixture
def small_fs(tmp_path: Path) -> Any:
    """A 24 MiB tmpfs the test can fill (the tests run as root, as `make test` does in CI)."""
    mount = tmp_path / "small"
    mount.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True,
                         text=True)
    assert out.returncode == 0, f"cannot mount a tmpfs for the disk-full test (needs root): {out.stderr}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> Path:
    """Write until the filesystem says ENOSPC."""
    filler = path / "filler.bin"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
    return filler


async def test_disk_full_alarms_keeps_live_view_and_resumes(
        make_live: Any, small_fs: Path, http: aiohttp.ClientSession, vp8_loop: EncodedLoop,
        opus_loop: EncodedAudioLoop) -> None:
    archive = small_fs / "archive"
    live: LiveServer = await make_live(archive={"dir": str(archive), "segment_s": 2.0, "min_free_bytes": 2 << 20,
                                                "sign_interval_s": 1.0, "reconnect_grace_s": 30.0})
    events = ArchiveEvents(live)
    live.add_user("op", "operator")
    console = await Console(live.url, await live.login("op")).connect()
    token = live.add_unit("bc-full")
    pub = await make_publisher(vp8_loop, opus_loop)
    await whip_publish(http, live.url, "bc-full", token, pub)
    viewer = await make_viewer()
    await whep_view(http, live.url, "bc-full", await live.login("op"), viewer)
    try:
        await viewer.wait_frames(30, timeout=15)
        await events.wait("sealed", 1)  # something recorded before the disk fills
        filler = fill(small_fs)
        full_at = time.monotonic()
        alert = await console.next("alert", lambda a: a["kind"] == "recording_degraded", timeout=5.0)
        assert time.monotonic() - full_at <= 5.0 and "disk full" in alert["message"]
        # Live view goes on while nothing can be recorded.
        seen = len(viewer.frames)
        await viewer.wait_frames(seen + 60, timeout=5)
        assert live.app[ARCHIVE].status()["disk_full"] is True
        await asyncio.sleep(2.0)
        filler.unlink()
        resumed = await console.next("alert", lambda a: a["kind"] == "recording_resumed", timeout=10.0)
        assert "resumed" in resumed["message"]
        sealed_before = len([k for k, _ in events.seen if k == "sealed"])
        await events.wait("sealed", sealed_before + 1, timeout=15)  # recording resumed after space returned
    finally:
        await pub.close()
        await viewer.close()
        await console.close()
    await live.app[ARCHIVE].close()
    gaps = [g for g in of_type(archive, "gap") if g["cause"] == "disk_full"]
    assert len(gaps) == 1, entries(archive)
    for seg in of_type(archive, "segment_sealed"):
        ffprobe(archive / seg["path"])
    assert not [p for p in archive.rglob("*.part")], "nothing partial is left behind"
    report = verify_archive(archive, allow_unanchored=True)
    assert report.failures == [], report.failures
    shutil.rmtree(archive)

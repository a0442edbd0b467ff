"""Media workers (``[media] workers``, docs/architecture.md): a real ``dispatch-server serve`` with two
worker processes, real ``field-client`` units publishing over WHIP, real aiortc viewers over WHEP.
Units spread over both workers; viewers, talk-back and recording work whichever worker a unit is
on; a worker killed with SIGKILL is restarted, its unit publishes again by itself (told over its
link that its media was lost), and the
recording shows a ``worker_restarted`` gap while the unit on the other worker never stopped."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import aiohttp
import pytest
from aiortc import RTCSessionDescription

from dispatch_server.app import _relay
from dispatch_server.config import MediaConfig
from dispatch_server.media_host import LocalMediaHost
from dispatch_server.media_workers import MediaWorkers, RemoteSession, WorkerProcess
from field_client.encoded_loop import EncodedAudioLoop, EncodedLoop
from tests.dispatch_server.test_pulls import METRICS_TOKEN, metric
from tests.recordings.archive_support import ffprobe, of_type, segment_paths
from tests.support.browser import chromium
from tests.support.field_page import FieldPage
from tests.support.lose_one_packet import LoseOnePacket
from tests.support.peers import Viewer, make_publisher, make_viewer, whep_view, whip_publish
from tests.support.processes import Process, assert_clean
from tests.support.server import ServerProcess, add_unit, add_user, login, write_config
from tests.support.waits import until

UNITS = ("bc-01", "bc-02")


def placements(server: ServerProcess) -> list[tuple[str, int, int]]:
    """``(unit, worker, pid)`` of every publish the front handed to a worker, in order."""
    out = []
    for line in server.log:
        m = re.search(r"unit (\S+): publishing session \w+ on media worker (\d) \(pid (\d+)\)", line)
        if m:
            out.append((m[1], int(m[2]), int(m[3])))
    return out


@pytest.mark.timeout(240)
async def test_units_spread_over_workers_and_a_killed_worker_is_restarted_with_a_gap(
    tmp_path: Path, http: aiohttp.ClientSession, opus_loop: EncodedAudioLoop
) -> None:
    cfg = write_config(tmp_path / "workers.toml", tmp_path / "data",
                       "[media]\nworkers = 2\n[archive]\nsegment_s = 2.0\nreconnect_grace_s = 60.0\n")
    cfg.write_text(cfg.read_text().replace("[metrics]\n", f'[metrics]\ntoken = "{METRICS_TOKEN}"\n', 1))
    tokens = {u: add_unit(cfg, u) for u in UNITS}
    add_user(cfg, "op", "operator", "operator-pass-1")
    server = ServerProcess(cfg).start()
    units: dict[str, Process] = {}
    viewers: list[Viewer] = []
    try:
        assert any("2 media workers running" in line for line in server.log), server.output()
        op = await login(server.url, "op", "operator-pass-1")
        for u in UNITS:
            units[u] = await Process.start(
                "-m", "field_client", "--server", server.url, "--unit", u, "--token", tokens[u],
                "--signalling", "whip", "--video", "test-pattern", "--audio", "none", "--size", "160x120",
                "--fps", "15", "--gps", "none")
        await until(lambda: len(placements(server)) == 2, 60, "both units publishing", interval=0.1)
        placed = {u: (w, pid) for u, w, pid in placements(server)}
        assert {w for w, _ in placed.values()} == {0, 1}, f"one unit per worker: {placed}"
        [worker_url, *_] = [line.rsplit(" ", 1)[1] for line in server.log if " ready at http" in line]
        async with http.post(f"{worker_url}/publish", json={}, headers={"X-Worker-Secret": "guess"}) as r:
            assert r.status == 403, "a worker serves only its front"

        # Talk-back reaches the unit: its listening session is on the unit's worker, and it hears
        # the operator while the viewers below connect.
        mic = await make_publisher(None, opus_loop)
        headers = {"Authorization": f"Bearer {op}", "Content-Type": "application/sdp"}
        async with http.post(f"{server.url}/api/talk/bc-01", data=mic.pc.localDescription.sdp, headers=headers) as r:
            assert r.status == 201, await r.text()
            talk_location = r.headers["Location"]
            await mic.pc.setRemoteDescription(RTCSessionDescription(sdp=await r.text(), type="answer"))
        await units["bc-01"].line_with("talk-back from op: listening", timeout=30)
        assert any("bc-01: talk:bc-01 publisher session" in line and f"media worker {placed['bc-01'][0]}" in line
                   for line in server.log), "talk-back lives on the unit's worker"

        # A WHEP viewer of each unit, whichever worker it is on, gets frames.
        for u in UNITS:
            viewer = await make_viewer(audio=False)
            viewers.append(viewer)
            await whep_view(http, server.url, u, op, viewer)
            await viewer.wait_frames(10, timeout=60)
            assert viewer.frames[0][2], "a viewer starts at a keyframe"
        other_viewer = viewers[1]
        frames_in = 'dispatch_relay_frames_in_total{kind="video"}'
        assert await metric(http, server, frames_in) > 0, "/metrics counts the workers' relays"
        # Each scrape samples every publisher's loss since the last one, workers' publishers too.
        loss_samples = "dispatch_publisher_packet_loss_ratio_count"
        first = await metric(http, server, loss_samples)
        await until(lambda: _more(http, server, loss_samples, first + 1), 60, "loss ratio of both workers' publishers",
                    interval=0.2)

        async with http.delete(f"{server.url}{talk_location}", headers={"Authorization": f"Bearer {op}"}) as r:
            assert r.status == 200
        line = await units["bc-01"].line_with("talk-back ended", timeout=30)
        heard = re.search(r"\((\d+) audio frames heard", line)
        assert heard is not None and int(heard[1]) > 0, line
        await mic.close()

        # SIGKILL the worker of bc-01: it is restarted, bc-01 publishes again by itself (on a running
        # worker), a new viewer gets its frames, and bc-02 on the other worker never stopped.
        worker, pid = placed["bc-01"]
        other_frames = len(other_viewer.frames)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        await until(lambda: any(f"media worker {worker} died" in line for line in server.log), 30, "death seen",
                    interval=0.1)
        await units["bc-01"].line_with("the server lost our media", timeout=30)  # told over its link
        await until(lambda: len(placements(server)) == 3, 90, "bc-01 publishing again", interval=0.1)
        republished = time.monotonic() - killed_at
        # Told at once, the unit need not wait for ICE consent to fail (~30 s in aiortc).
        assert republished < 20, f"bc-01 published again only {republished:.1f} s after its worker died"
        assert placements(server)[-1][0] == "bc-01"
        await until(lambda: sum(f"media worker {worker} (pid" in line and "ready at" in line
                                for line in server.log) == 2, 30, "the worker restarted", interval=0.1)
        again = await make_viewer(audio=False)
        viewers.append(again)
        await whep_view(http, server.url, "bc-01", op, again)
        await again.wait_frames(10, timeout=60)
        await other_viewer.wait_frames(other_frames + 15 * 5, timeout=30)
        counted = await metric(http, server, frames_in)
        await until(lambda: _more(http, server, frames_in, counted), 10, "counters growing after the restart")
        assert not any("bc-02" in line and "ended" in line for line in server.log), "bc-02 never stopped"
        print(f"bc-01 published again {republished:.1f} s after its worker was killed")

        for u in UNITS:
            await units.pop(u).stop()
        server.stop()
        archive = tmp_path / "data" / "archive"
        [rec] = [r for r in of_type(archive, "recording_opened") if r["unit_id"] == "bc-01"]
        gaps = of_type(archive, "gap", rec["recording_id"])
        assert [g["cause"] for g in gaps] == ["worker_restarted"], gaps
        assert 0 < gaps[0]["seconds"] < republished + 5, gaps
        segments = segment_paths(archive, rec["recording_id"])
        assert len(segments) >= 2 and all(ffprobe(s)["streams"] for s in segments), segments
    finally:
        for viewer in viewers:
            await viewer.close()
        for unit in units.values():
            await unit.stop()
        server.stop()  # fails on a traceback or an unawaited coroutine in its output (workers' included)


async def _more(http: aiohttp.ClientSession, server: ServerProcess, name: str, than: float) -> bool:
    return await metric(http, server, name) > than


@pytest.mark.timeout(240)
async def test_the_field_page_publishes_again_as_soon_as_its_worker_dies(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """An officer on the /field page (Chromium) whose media worker is killed: the server tells the
    page over its link, and the page publishes again at once (not after ICE consent fails), says
    why, and the command room sees the unit's video again; the link itself never dropped."""
    cfg = write_config(tmp_path / "workers.toml", tmp_path / "data", "[media]\nworkers = 2\n")
    token = add_unit(cfg, "ph-01", "phone")
    add_user(cfg, "op", "operator", "operator-pass-1")
    server = ServerProcess(cfg).start()
    viewer: Viewer | None = None
    try:
        op = await login(server.url, "op", "operator-pass-1")
        async with chromium() as browser:
            fp = await FieldPage.open(browser, server.url, "ph-01", token)
            await fp.start()
            await until(lambda: len(placements(server)) == 1, 60, "the page publishing", interval=0.1)
            [(_, worker, pid)] = placements(server)
            links = await fp.page.evaluate("window.fieldPage.linkConnects")
            os.kill(pid, signal.SIGKILL)
            await until(lambda: any(f"media worker {worker} died" in line for line in server.log), 30, "death seen",
                        interval=0.1)
            await fp.wait_until("() => window.fieldPage.mediaLosses === 1")
            # Not this phone's fault: shown as connecting (with why), not as an error.
            assert await fp.page.evaluate("window.fieldPage.state") in ("connecting", "live")
            await until(lambda: len(placements(server)) == 2, 60, "the page publishing again", interval=0.1)
            await fp.wait_until("() => window.fieldPage.state === 'live'", timeout_s=60)
            assert await fp.page.evaluate("window.fieldPage.linkConnects") == links, "the link never dropped"
            viewer = await make_viewer(audio=False)
            await whep_view(http, server.url, "ph-01", op, viewer)
            await viewer.wait_frames(10, timeout=60)
            fp.assert_no_js_errors()
            await fp.close()
        server.stop()
    finally:
        if viewer is not None:
            await viewer.close()
        server.stop()  # fails on a traceback or an unawaited coroutine in its output (workers' included)


async def test_a_session_being_opened_keeps_its_unit_on_its_worker() -> None:
    """Placement alone (no processes: the workers only marked ready). A unit's publisher ends while
    a viewer's request for it is still in flight on its worker; meanwhile another unit arrives.
    The unit's next publish must go where that viewer is about to live, not to the worker that
    is least loaded by then."""
    workers = MediaWorkers(2, ["unused"], {}, LocalMediaHost(_relay(MediaConfig()), []))
    for w in workers.workers:
        w.ready.set()

    def open_on(unit: str, worker: WorkerProcess, session_id: str) -> RemoteSession:
        session = RemoteSession(worker, session_id, unit, lambda s, r: None)
        worker.adopt(session, worker.starts)
        return session

    assert workers._worker_for("b").index == 0
    open_on("b", workers.workers[0], "b-pub")
    w1 = workers._worker_for("u")
    assert w1.index == 1
    publisher = open_on("u", w1, "u-pub")

    with workers._opening_on("u", w1):  # a viewer's watch request for "u" is in flight on w1 (as in watch())
        del w1.sessions[publisher.id]  # the publisher ends (as RemoteSession.ended does) ...
        workers.release("u", w1)  # ... and releases its unit
        assert workers._worker_for("c").index == 0, "w1 keeps u while its viewer is being opened"
        open_on("c", workers.workers[0], "c-pub")
        open_on("u", w1, "u-viewer")  # the viewer's answer arrives
    assert workers._worker_for("u") is w1, "u's next publish joins its viewer"

    del w1.sessions["u-viewer"]  # and once nothing of u is left or opening there, u is free again
    workers.release("u", w1)
    assert "u" not in workers._assigned


@pytest.mark.timeout(180)
async def test_a_whip_delete_waits_in_the_worker_for_the_packets_still_being_recovered(
    tmp_path: Path, http: aiohttp.ClientSession, vp8_loop: EncodedLoop
) -> None:
    """As ``tests/media/test_packets.py`` checks in one process, with the unit's media on a worker:
    the front hands the DELETE to the worker, which answers once the packet being recovered
    arrived; the worker logs nothing lost for good."""
    cfg = write_config(tmp_path / "workers.toml", tmp_path / "data", "[media]\nworkers = 1\nkeyframe_interval_s = 0\n")
    token = add_unit(cfg, "bc-07")
    server = ServerProcess(cfg).start()
    pub = await make_publisher(vp8_loop)
    net = LoseOnePacket(pub.pc.getSenders()[0], nth=100)
    try:
        await whip_publish(http, server.url, "bc-07", token, pub)
        assert any("bc-07: publishing session" in line and "media worker 0" in line for line in server.log)
        await asyncio.wait_for(net.first_retransmission_lost.wait(), 30)
        assert pub.location
        async with http.delete(server.url + pub.location, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200, await resp.text()
        assert net.tries >= 2, "the DELETE was answered before the lost packet was asked for again"
        await until(lambda: any(re.search(r"bc-07: publisher \w+: video: \d+ packets", line) for line in server.log),
                    30, "the worker's summary of the publisher")
        summary = next(line for line in server.log if re.search(r"bc-07: publisher \w+: video:", line))
        assert ", 0 lost for good" in summary, summary
    finally:
        await pub.close()
        server.stop()
    assert_clean(server.output(), "dispatch-server")

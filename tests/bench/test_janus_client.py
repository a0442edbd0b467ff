"""bench.janus_client and bench.janus_server against a real Janus 1.1 process (Debian ``janus``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest
from aiortc import RTCSessionDescription

from bench import janus_client, janus_server
from field_client.encoded_loop import EncodedAudioLoop, EncodedLoop
from tests.support.orphans import die_with_suite
from tests.support.peers import make_answering_viewer, make_publisher
from tests.support.processes import Process
from tests.support.waits import until


@dataclass
class Janus:
    url: str
    expected_errors: list[str] = field(default_factory=list)  # what the test provoked on purpose


@pytest.fixture
async def janus(tmp_path: Path) -> AsyncIterator[Janus]:
    """A Janus process with the benchmark's generated configuration; it must log no error the
    test did not provoke."""
    config = janus_server.JanusConfig(port=janus_server.free_port(), host_address=janus_server.primary_address())
    folder = janus_server.write_config(tmp_path / "janus", config)
    proc = await asyncio.create_subprocess_exec(
        *janus_server.command(folder), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, preexec_fn=die_with_suite(),
    )
    process = Process(proc, "janus")
    try:
        await process.line_with(janus_server.READY_TEXT, timeout=30)
        under_test = Janus(config.url)
        yield under_test
    finally:
        await process.stop(timeout=30)
    errors = [line for line in process.lines
              if "[ERR]" in line and not any(e in line for e in under_test.expected_errors)]
    assert not errors, "\n".join(errors)


async def test_generated_config_leaves_only_videoroom_over_http_and_host_udp(janus: Janus) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{janus.url}/info") as resp:
        info = await resp.json(content_type=None)
    assert info["version_string"] == "1.1.2"
    assert list(info["plugins"]) == [janus_client.VIDEOROOM]
    assert list(info["transports"]) == ["janus.transport.http"]
    assert info["events"] == {} and info["loggers"] == {}
    assert (info["ice-tcp"], info["ipv6"], info["full-trickle"]) == (False, False, False)
    assert "stun-server" not in info and "turn-server" not in info


async def test_publisher_and_subscriber_exchange_vp8_and_opus_through_a_videoroom(
    janus: Janus, vp8_loop: EncodedLoop, opus_loop: EncodedAudioLoop
) -> None:
    janus.expected_errors += ["No such feed", "No such room", "Couldn't find any session"]
    async with aiohttp.ClientSession() as http, janus_client.JanusSession(http, janus.url) as session:
        pub_handle = await session.attach()
        room = await janus_client.create_room(session, pub_handle)
        publisher = await make_publisher(vp8_loop, opus_loop)
        feed, answer = await janus_client.publish(session, pub_handle, room, publisher.pc.localDescription.sdp)
        await publisher.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await session.wait_up(pub_handle)
        # Janus gathers on the enforced address only (other interfaces of a shared machine come and go).
        candidates = {line.split()[4] for line in answer.splitlines() if line.startswith("a=candidate:")}
        assert candidates == {janus_server.primary_address()}

        sub_handle = await session.attach()
        offer = await janus_client.subscribe(session, sub_handle, room, feed)
        viewer = await make_answering_viewer(offer)
        try:
            await janus_client.start(session, sub_handle, room, viewer.pc.localDescription.sdp)
            assert viewer.mime.lower() == "video/vp8"
            await viewer.wait_frames(15, timeout=20)
            await viewer.wait_audio(25, timeout=20)
            # Janus forwards what was sent, byte for byte, starting at a keyframe (it asks the
            # publisher for one when the subscriber starts).
            sent = {digest for digest, _ in publisher.sent}
            assert all(digest in sent for _, digest, _ in viewer.frames)
            assert viewer.frames[0][2], "the first frame a subscriber gets is a keyframe"
            assert session.events_seen >= 3  # joined, attached, started came through the long poll

            with pytest.raises(janus_client.JanusError, match="VideoRoom error"):
                await janus_client.subscribe(session, await session.attach(), room, feed + 1)
            await session.detach(sub_handle)
            await janus_client.destroy_room(session, pub_handle, room)
            with pytest.raises(janus_client.JanusError, match="VideoRoom error"):
                await janus_client.destroy_room(session, pub_handle, room)
        finally:
            await viewer.close()
            await publisher.close()
        await session.close()
        assert session.closed
        await session.close()  # idempotent
        with pytest.raises(janus_client.JanusError, match="Janus error 458"):  # no such session
            await janus_client.JanusSession(http, janus.url)._post(f"/{session.id}", {"janus": "keepalive"})


async def test_a_recording_room_writes_the_publishers_audio_and_video(
    janus: Janus, vp8_loop: EncodedLoop, opus_loop: EncodedAudioLoop, tmp_path: Path
) -> None:
    """bench.relay --janus-records: each room records its publisher (Janus's .mjr files)."""
    record_dir = tmp_path / "rec"
    record_dir.mkdir()
    async with aiohttp.ClientSession() as http, janus_client.JanusSession(http, janus.url) as session:
        handle = await session.attach()
        room = await janus_client.create_room(session, handle, "recorded", str(record_dir))
        publisher = await make_publisher(vp8_loop, opus_loop)
        try:
            feed, answer = await janus_client.publish(session, handle, room, publisher.pc.localDescription.sdp)
            await publisher.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            await session.wait_up(handle)

            def sizes() -> dict[str, int]:
                return {p.name: p.stat().st_size for p in record_dir.glob("*.mjr")}

            await until(lambda: len(sizes()) >= 2 and all(size > 20_000 for size in sizes().values()), 30,
                        "Janus records the publisher's audio and video")
            names = sorted(sizes())
            assert any("video" in n for n in names) and any("audio" in n for n in names), names
            await janus_client.destroy_room(session, handle, room)
        finally:
            await publisher.close()
        await session.close()

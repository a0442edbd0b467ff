"""Recording what headless Chromium publishes from the field page, frame for frame.

An init script turns on Chromium's encoded insertable streams for the page's peer connection and
hashes every encoded frame on its way to the packetizer, so the test knows exactly which bytes
were sent; the recording must hold those bytes, in that order.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from dispatch_server.appkeys import ARCHIVE
from tests.conftest import LiveServer
from tests.recordings.archive_support import ffprobe, of_type, packets, segment_paths
from tests.recordings.test_recorder import FAST, ArchiveEvents
from tests.support.browser import chromium

TAP_SENT_FRAMES = """
(() => {
  const Native = window.RTCPeerConnection;
  const sent = { video: [], audio: [], hold: false };
  window.__sent = sent;
  const hex = (buf) => Array.from(new Uint8Array(buf)).map((b) => b.toString(16).padStart(2, '0')).join('');
  function tap(sender) {
    const kind = sender.track ? sender.track.kind : 'video';
    const { readable, writable } = sender.createEncodedStreams();
    readable.pipeThrough(new TransformStream({
      transform(frame, controller) {
        if (sent.hold) return;  // stop sending: what was sent is final
        sent[kind].push(crypto.subtle.digest('SHA-256', frame.data.slice(0)).then(hex));
        controller.enqueue(frame);
      },
    })).pipeTo(writable);
  }
  window.RTCPeerConnection = function (config) {
    const pc = new Native({ ...(config || {}), encodedInsertableStreams: true });
    const addTransceiver = pc.addTransceiver.bind(pc);
    pc.addTransceiver = (track, init) => {
      const t = addTransceiver(track, init);
      tap(t.sender);
      return t;
    };
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
})();
"""


def align(sent: list[str], recorded: list[str]) -> int | None:
    """Where ``recorded`` starts as a contiguous run of ``sent``, or None."""
    n = len(recorded)
    return next((i for i in range(len(sent) - n + 1) if sent[i:i + n] == recorded), None)


async def test_ten_seconds_from_chromium_are_recorded_byte_identical(make_live: Any) -> None:
    live: LiveServer = await make_live(archive=FAST)
    events = ArchiveEvents(live)
    token = live.add_unit("bc-chrome")
    async with chromium() as browser:
        ctx = await browser.new_context()
        await ctx.add_init_script(TAP_SENT_FRAMES)
        page = await ctx.new_page()
        await page.goto(f"{live.url}/field")
        await page.fill("#unit-id", "bc-chrome")
        await page.fill("#unit-token", token)
        await page.click("#start-btn")
        await page.wait_for_selector("#field-state[data-state='live']", timeout=20_000)
        await asyncio.sleep(10.0)
        await page.evaluate("window.__sent.hold = true")
        await asyncio.sleep(1.0)
        sent_video: list[str] = await page.evaluate("Promise.all(window.__sent.video)")
        sent_audio: list[str] = await page.evaluate("Promise.all(window.__sent.audio)")
        await page.click("#stop-btn")
        await page.wait_for_selector("#field-state[data-state='idle']", timeout=10_000)
        await ctx.close()
    rid = (await events.wait("closed"))[0]["recording_id"]
    archive = live.settings.archive_dir
    video: list[str] = []
    audio: list[str] = []
    duration = 0.0
    for path in segment_paths(archive, rid):
        probe = ffprobe(path)
        assert {s["codec_name"] for s in probe["streams"]} == {"vp8", "opus"}
        duration += float(probe["format"]["duration"])
        for kind, data, _ in packets(path):
            (video if kind == "video" else audio).append(hashlib.sha256(data).hexdigest())
    assert len(sent_video) > 100
    # Chromium's first frames may leave before the connection is up; from the first frame that
    # reached the server, every frame is recorded byte for byte.
    first = align(sent_video, video)
    assert first is not None and first <= 30, f"recording starts {first} frames into what Chromium sent"
    assert len(video) == len(sent_video) - first, f"recorded {len(video)}, sent {len(sent_video) - first} after frame {first}"
    # Chromium's fake microphone is mostly silence, so many Opus packets are identical: align on
    # the whole run, not on the first packet.
    start = align(sent_audio, audio)
    assert start is not None, "recorded audio is a contiguous run of the sent packets"
    assert len(sent_audio) - start - len(audio) <= 5
    sent_s = len(sent_audio) * 0.020  # Opus frames of 20 ms: the time Chromium was sending
    assert abs(duration - sent_s) <= 0.5, f"recorded {duration:.2f} s of {sent_s:.2f} s sent"
    assert of_type(archive, "recording_closed", rid)[0]["segments"] >= 3
    await live.app[ARCHIVE].close()

"""Recording what headless Chromium publishes from the field page, frame for frame.

An init script turns on Chromium's encoded insertable streams for the page's peer connection and
hashes every encoded frame on its way to the packetizer, so the test knows exactly which bytes
were sent, which frames were keyframes and when each left; the recording must hold those bytes,
in that order, cut into segments on keyframes by the archive's rule. Chromium sends keyframes
only when asked, so the segments follow the archive's own keyframe requests (and the relay's),
not the browser's encoder settings.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from dispatch_server.appkeys import ARCHIVE, LIVE
from tests.conftest import LiveServer
from tests.recordings.archive_support import ffprobe, of_type, packets, segment_paths
from tests.recordings.test_recorder import FAST, ArchiveEvents
from tests.support.browser import chromium

TAP_SENT_FRAMES = """
(() => {
  const Native = window.RTCPeerConnection;
  const sent = { video: [], audio: [], key: [], at: [], t0: undefined, hold: false };
  window.__sent = sent;
  const hex = (buf) => Array.from(new Uint8Array(buf)).map((b) => b.toString(16).padStart(2, '0')).join('');
  function tap(sender) {
    const kind = sender.track ? sender.track.kind : 'video';
    const { readable, writable } = sender.createEncodedStreams();
    readable.pipeThrough(new TransformStream({
      transform(frame, controller) {
        if (sent.hold) return;  // stop sending: what was sent is final
        if (kind === 'video') {
          const now = performance.now();
          if (sent.t0 === undefined) sent.t0 = now;
          sent.key.push(frame.type === 'key');
          sent.at.push((now - sent.t0) / 1000);
        }
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


SENT_S = 10.0  # how long Chromium sends
CUT_SLACK_S = 0.5  # the archive cuts on its own clock when frames arrive; the test sees send times


def align(sent: list[str], recorded: list[str]) -> int | None:
    """Where ``recorded`` starts as a contiguous run of ``sent``, or None."""
    n = len(recorded)
    return next((i for i in range(len(sent) - n + 1) if sent[i:i + n] == recorded), None)


class Received:
    """Hashes of the video frames the relay got from the unit, to wait for the last one sent."""

    def __init__(self) -> None:
        self.hashes: set[str] = set()
        self._changed = asyncio.Event()

    def tap(self, frame: Any, keyframe: bool) -> None:
        self.hashes.add(hashlib.sha256(bytes(frame)).hexdigest())
        self._changed.set()

    async def wait_for(self, digest: str, timeout: float = 20.0) -> None:
        async def until() -> None:
            while digest not in self.hashes:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)


async def test_ten_seconds_from_chromium_are_recorded_byte_identical(make_live: Any) -> None:
    live: LiveServer = await make_live(archive=FAST)
    events = ArchiveEvents(live)
    token = live.add_unit("bc-chrome")
    received = Received()
    live.app[LIVE].relay.channel("bc-chrome").add_tap("video", received.tap)
    async with chromium() as browser:
        ctx = await browser.new_context(bypass_csp=True)  # wait_for_function evaluates strings
        await ctx.add_init_script(TAP_SENT_FRAMES)
        page = await ctx.new_page()
        await page.goto(f"{live.url}/field")
        await page.fill("#unit-id", "bc-chrome")
        await page.fill("#unit-token", token)
        await page.click("#start-btn")
        await page.wait_for_selector("#field-state[data-state='live']", timeout=20_000)
        await page.wait_for_function(
            f"window.__sent.t0 !== undefined && performance.now() - window.__sent.t0 >= {SENT_S * 1000}",
            timeout=(SENT_S + 30) * 1000, polling=100)
        await page.evaluate("window.__sent.hold = true")
        sent_video: list[str] = await page.evaluate("Promise.all(window.__sent.video)")
        sent_audio: list[str] = await page.evaluate("Promise.all(window.__sent.audio)")
        sent_key: list[bool] = await page.evaluate("window.__sent.key")
        sent_at: list[float] = await page.evaluate("window.__sent.at")
        await received.wait_for(sent_video[-1])  # what was sent has reached the server
        await page.click("#stop-btn")
        await page.wait_for_selector("#field-state[data-state='idle']", timeout=10_000)
        await ctx.close()
    rid = (await events.wait("closed"))[0]["recording_id"]
    archive = live.settings.archive_dir
    video: list[str] = []
    audio: list[str] = []
    starts: list[int] = []  # index in ``video`` of each segment's first video frame
    duration = 0.0
    for path in segment_paths(archive, rid):
        probe = ffprobe(path)
        assert {s["codec_name"] for s in probe["streams"]} == {"vp8", "opus"}
        duration += float(probe["format"]["duration"])
        starts.append(len(video))
        for kind, data, _ in packets(path):
            (video if kind == "video" else audio).append(hashlib.sha256(data).hexdigest())
    assert len(sent_video) > 100
    # Chromium's first frames may leave before the connection is up; from the first frame that
    # reached the server, every frame is recorded byte for byte.
    first = align(sent_video, video)
    assert first is not None and first <= 30, f"recording starts {first} frames into what Chromium sent"
    assert len(video) == len(sent_video) - first, \
        f"recorded {len(video)}, sent {len(sent_video) - first} after frame {first}"
    # Chromium's fake microphone is mostly silence, so many Opus packets are identical: align on
    # the whole run, not on the first packet.
    start = align(sent_audio, audio)
    assert start is not None, "recorded audio is a contiguous run of the sent packets"
    assert len(sent_audio) - start - len(audio) <= 5
    sent_s = len(sent_audio) * 0.020  # Opus frames of 20 ms: the time Chromium was sending
    assert abs(duration - sent_s) <= 0.5, f"recorded {duration:.2f} s of {sent_s:.2f} s sent"
    # Segments are cut on the keyframes Chromium sent: each starts on one, none comes before
    # segment_s, and none is missed (a keyframe well past segment_s inside a segment).
    segment_s = FAST["segment_s"]
    cuts = [first + k for k in starts]
    assert all(sent_key[c] for c in cuts), [(c, sent_key[c]) for c in cuts]
    for cut, next_cut in zip(cuts, cuts[1:] + [len(sent_video)], strict=True):
        late = [i for i in range(cut + 1, next_cut)
                if sent_key[i] and sent_at[i] - sent_at[cut] > segment_s + CUT_SLACK_S]
        assert not late, f"segment from frame {cut}: keyframes {late} came after {segment_s} s and did not cut it"
        if next_cut < len(sent_video):
            assert sent_at[next_cut] - sent_at[cut] >= segment_s - CUT_SLACK_S, f"segment from frame {cut} cut early"
    # The archive asks for a keyframe when a segment is due, so 10 s make at least 3 segments
    # of 3 s whatever keyframe interval the browser's encoder keeps by itself.
    assert len(cuts) == of_type(archive, "recording_closed", rid)[0]["segments"] >= 3
    await live.app[ARCHIVE].close()

"""Pre-encoded synthetic media: a test-pattern video and a tone, encoded once, replayed forever.

Publishers and load generators must not encode in real time (measured: encoding costs ~10% of a
core per stream, forwarding ~2%; docs/benchmarks.md). An :class:`EncodedLoop` renders a few seconds of a test
pattern and encodes it twice: once as the normal stream (a keyframe at frame 0, deltas after)
and once with every frame forced to a keyframe, so a keyframe can be sent at any position when
a receiver asks for one. A keyframe at ``i`` followed by the normal delta ``i+1`` decodes with a
small drift (the delta predicts from a slightly different picture) which disappears at the next
loop start; VP8 is encoded in error-resilient mode so that delta frames do not depend on entropy
state carried over from earlier deltas, which a foreign keyframe would not reproduce.

Building a 640x480 loop takes about 1.5 s of CPU: tracks share loops through a
:class:`field_client.loop_cache.LoopCache`, and :mod:`field_client.encoded_track` replays them.
"""

from __future__ import annotations

import concurrent.futures
import fractions
import logging
import math
from dataclasses import dataclass
from typing import Any

import av
import cv2
import numpy as np
from av.video.frame import PictureType

from media.keyframes import is_keyframe

from .codec import normalize_codec, video_mime_type

logger = logging.getLogger(__name__)

VIDEO_CLOCK_RATE = 90_000
AUDIO_CLOCK_RATE = 48_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_CLOCK_RATE)
OPUS_FRAME_SAMPLES = 960  # 20 ms at 48 kHz

_ENCODERS = {"vp8": "libvpx", "h264": "libx264"}


@dataclass(frozen=True)
class VideoLoopSpec:
    """What a video loop looks like; loops are shared between tracks with equal specs."""

    codec: str = "vp8"
    width: int = 640
    height: int = 480
    fps: int = 30
    frame_count: int = 90
    bitrate: int = 1_000_000  # bits per second the encoder aims at
    label: str = "FIELD TEST"
    # A patch of fresh noise per frame (a fifth of each side) so the encoder actually spends
    # ~1 Mbit/s, like a real camera; without it the pattern compresses to ~0.2 Mbit/s.
    noise: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "codec", normalize_codec(self.codec))
        if self.width <= 0 or self.height <= 0 or self.width % 2 or self.height % 2:
            raise ValueError(f"video size must be positive and even, got {self.width}x{self.height}")
        if not 1 <= self.fps <= 120:
            raise ValueError(f"fps must be within 1..120, got {self.fps}")
        if self.frame_count < 1:
            raise ValueError(f"frame_count must be at least 1, got {self.frame_count}")


@dataclass(frozen=True)
class AudioLoopSpec:
    """A sine tone encoded as 20 ms Opus packets; ``duration_s`` should hold whole cycles."""

    frequency_hz: float = 440.0
    duration_s: float = 1.0
    amplitude: float = 0.2  # of full scale
    bitrate: int = 32_000


def render_pattern(spec: VideoLoopSpec, index: int, rng: np.random.Generator) -> np.ndarray:
    """One BGR test-pattern frame: colour bars, a bar moving once per loop, label and counter."""
    w, h = spec.width, spec.height
    img = np.zeros((h, w, 3), np.uint8)
    bars = [(255, 255, 255), (0, 255, 255), (255, 255, 0), (0, 255, 0),
            (255, 0, 255), (0, 0, 255), (255, 0, 0)]  # BGR: white, yellow, cyan, green, ...
    bar_w = max(1, w // len(bars))
    top = h * 2 // 3
    for k, colour in enumerate(bars):
        img[:top, k * bar_w:(k + 1) * bar_w] = colour
    x = int(index * w / spec.frame_count)
    half = max(2, w // 32)
    img[top:, max(0, x - half):x + half] = (255, 255, 255)
    if spec.noise:
        nh, nw = h // 5, w // 5
        img[h - nh:, w - nw:] = rng.integers(0, 256, (nh, nw, 1), dtype=np.uint8)
    scale = h / 400
    thickness = max(1, round(h / 240))
    cv2.rectangle(img, (0, 0), (w, int(48 * scale)), (0, 0, 0), -1)
    cv2.putText(img, spec.label, (int(10 * scale), int(34 * scale)),
                cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness)
    counter = f"{spec.codec.upper()} {index:04d}/{spec.frame_count}"
    (text_w, _), _ = cv2.getTextSize(counter, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    cv2.putText(img, counter, (w - text_w - int(10 * scale), int(34 * scale)),
                cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness)
    return img


def _video_encoder(spec: VideoLoopSpec, keyframes_only: bool) -> Any:
    ctx: Any = av.CodecContext.create(_ENCODERS[spec.codec], "w")
    ctx.width = spec.width
    ctx.height = spec.height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = fractions.Fraction(1, spec.fps)
    ctx.framerate = fractions.Fraction(spec.fps, 1)
    # Intra-only encoding gets more bits per frame so its keyframes look like the real one.
    ctx.bit_rate = spec.bitrate * (3 if keyframes_only else 1)
    ctx.gop_size = 1 if keyframes_only else spec.frame_count + 1
    if spec.codec == "vp8":
        # libvpx's row-sync threads spin-wait: on a busy 2-core box one encode burned ~13 s
        # of CPU. One thread per encoder; the two encoders already run in parallel.
        ctx.thread_count = 1
        ctx.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "auto-alt-ref": "0",
            # Deltas must not depend on entropy state of earlier deltas: a keyframe spliced in
            # at position i comes from the other encoder (see the module docstring).
            "error-resilient": "1",
        }
    else:
        ctx.options = {
            "preset": "veryfast",
            "tune": "zerolatency",
            "profile": "baseline",  # constrained baseline, the profile aiortc offers
            "bf": "0",
            "scenecut": "0",
            "forced-idr": "1",
        }
    return ctx


def _encode_planes(spec: VideoLoopSpec, planes: list[np.ndarray], keyframes_only: bool) -> list[bytes]:
    encoder = _video_encoder(spec, keyframes_only)
    out: list[bytes] = []
    for index, plane in enumerate(planes):
        frame = av.VideoFrame.from_ndarray(plane, format="yuv420p")
        frame.pts = index
        if keyframes_only:
            frame.pict_type = PictureType.I
        out.extend(bytes(p) for p in encoder.encode(frame))
    out.extend(bytes(p) for p in encoder.encode(None))
    return out


class EncodedLoop:
    """A video loop encoded once: ``frames[i] == (delta_bytes, key_bytes)``.

    ``frames[0][0]`` is itself a keyframe; ``frames[i][1]`` is always a keyframe showing frame
    ``i``; ``mime_type`` is the RTP MIME type of ``spec.codec``. Immutable after construction and
    safe to share between tracks.
    """

    def __init__(self, spec: VideoLoopSpec, frames: list[tuple[bytes, bytes]]) -> None:
        if not frames:
            raise ValueError("an encoded loop needs at least one frame")
        self.spec = spec
        self.frames = frames
        self.mime_type = video_mime_type(spec.codec)
        self.delta_is_keyframe = [is_keyframe(self.mime_type, delta) for delta, _ in frames]

    @classmethod
    def build(cls, spec: VideoLoopSpec = VideoLoopSpec()) -> EncodedLoop:
        """Render and encode ``spec.frame_count`` frames (CPU-bound: ~1.5 s for 90 at 640x480).

        Blocking; from async code use :meth:`~field_client.loop_cache.LoopCache.video` or
        ``asyncio.to_thread``.
        """
        rng = np.random.default_rng(0)
        planes = [
            av.VideoFrame.from_ndarray(render_pattern(spec, i, rng), format="bgr24")
            .reformat(format="yuv420p").to_ndarray()
            for i in range(spec.frame_count)
        ]
        # The two encodes are independent and PyAV releases the GIL while encoding.
        with concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="loop-encode") as pool:
            delta_job = pool.submit(_encode_planes, spec, planes, False)
            key_job = pool.submit(_encode_planes, spec, planes, True)
            deltas, keys = delta_job.result(), key_job.result()
        if len(deltas) != spec.frame_count or len(keys) != spec.frame_count:
            raise RuntimeError(
                f"{spec.codec} encoder returned {len(deltas)}/{len(keys)} packets "
                f"for {spec.frame_count} frames"
            )
        loop = cls(spec, list(zip(deltas, keys, strict=True)))
        if not loop.delta_is_keyframe[0] or not all(is_keyframe(loop.mime_type, k) for k in keys):
            raise RuntimeError(f"{spec.codec} encoder did not produce the forced keyframes")
        logger.info(
            "built %s loop %dx%d, %d frames, %.0f kbit/s",
            spec.codec, spec.width, spec.height, spec.frame_count, loop.bitrate / 1000,
        )
        return loop

    @property
    def bitrate(self) -> float:
        """Average bit rate of the delta stream in bits per second."""
        total = sum(len(delta) for delta, _ in self.frames)
        return total * 8 * self.spec.fps / len(self.frames)


class EncodedAudioLoop:
    """A tone encoded once as Opus packets of 20 ms (960 samples at 48 kHz)."""

    def __init__(self, spec: AudioLoopSpec, packets: list[bytes]) -> None:
        if not packets:
            raise ValueError("an encoded audio loop needs at least one packet")
        self.spec = spec
        self.packets = packets

    @classmethod
    def build(cls, spec: AudioLoopSpec = AudioLoopSpec()) -> EncodedAudioLoop:
        """Encode the tone with libopus (stereo, 48 kHz). Blocking but fast (~20 ms per second)."""
        encoder = av.CodecContext.create("libopus", "w")
        encoder.sample_rate = AUDIO_CLOCK_RATE
        encoder.layout = "stereo"
        encoder.format = "s16"
        encoder.bit_rate = spec.bitrate
        encoder.time_base = AUDIO_TIME_BASE
        frames = max(1, round(spec.duration_s * AUDIO_CLOCK_RATE / OPUS_FRAME_SAMPLES))
        t = np.arange(frames * OPUS_FRAME_SAMPLES) / AUDIO_CLOCK_RATE
        mono = (np.sin(2 * math.pi * spec.frequency_hz * t) * spec.amplitude * 32767).astype(np.int16)
        stereo = np.repeat(mono, 2)  # interleaved L R
        packets: list[bytes] = []
        for k in range(frames):
            chunk = stereo[k * OPUS_FRAME_SAMPLES * 2:(k + 1) * OPUS_FRAME_SAMPLES * 2]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="stereo")
            frame.sample_rate = AUDIO_CLOCK_RATE
            frame.pts = k * OPUS_FRAME_SAMPLES
            packets.extend(bytes(p) for p in encoder.encode(frame))
        packets.extend(bytes(p) for p in encoder.encode(None))
        return cls(spec, packets)

"""Pre-encoded test-pattern loops: decodability at full size, keyframes anywhere, valid specs."""

from __future__ import annotations

from typing import Any

import av
import cv2
import numpy as np
import pytest

from field_client.codec import video_mime_type
from field_client.encoded_loop import EncodedLoop, VideoLoopSpec, render_pattern
from media.keyframes import is_keyframe

CODECS = ["vp8", "h264"]
FRAMES = 30
DECODERS = {"vp8": "vp8", "h264": "h264"}


@pytest.fixture(scope="module", params=CODECS)
def loop(request: pytest.FixtureRequest) -> EncodedLoop:
    return EncodedLoop.build(VideoLoopSpec(codec=request.param, frame_count=FRAMES))


def _rendered(spec: VideoLoopSpec) -> list[np.ndarray]:
    rng = np.random.default_rng(0)  # the same noise sequence EncodedLoop.build draws
    return [render_pattern(spec, i, rng) for i in range(spec.frame_count)]


def decode(codec: str, payloads: list[bytes]) -> list[av.VideoFrame]:
    decoder: Any = av.CodecContext.create(DECODERS[codec], "r")
    frames: list[av.VideoFrame] = []
    for data in payloads:
        frames.extend(decoder.decode(av.Packet(data)))
    frames.extend(decoder.decode(None))
    return frames


def _psnrs(frames: list[av.VideoFrame], references: list[np.ndarray]) -> list[float]:
    return [cv2.PSNR(f.to_ndarray(format="bgr24"), ref) for f, ref in zip(frames, references, strict=True)]


def test_delta_sequence_decodes_at_full_size(loop: EncodedLoop) -> None:
    spec = loop.spec
    sequence = [delta for delta, _ in loop.frames] * 2  # across one wrap
    frames = decode(spec.codec, sequence)
    assert len(frames) == len(sequence)
    assert {(f.width, f.height) for f in frames} == {(spec.width, spec.height)}
    assert min(_psnrs(frames, _rendered(spec) * 2)) > 28


@pytest.mark.parametrize("position", [1, FRAMES // 2, FRAMES - 1])
def test_keyframe_at_any_position_decodes_with_small_drift(loop: EncodedLoop, position: int) -> None:
    spec = loop.spec
    order = list(range(position, FRAMES)) + list(range(FRAMES))
    sequence = [loop.frames[position][1]] + [loop.frames[i][0] for i in order[1:]]
    frames = decode(spec.codec, sequence)
    assert len(frames) == len(sequence)
    assert {(f.width, f.height) for f in frames} == {(spec.width, spec.height)}
    rendered = _rendered(spec)
    psnrs = _psnrs(frames, [rendered[i] for i in order])
    assert min(psnrs) > 20  # drift after a spliced keyframe stays small
    assert min(psnrs[len(order) - FRAMES:]) > 28  # and is gone after the loop restarts


def test_keyframe_flags_match_the_bitstream(loop: EncodedLoop) -> None:
    mime = video_mime_type(loop.spec.codec)
    assert loop.mime_type == mime
    assert loop.delta_is_keyframe == [True] + [False] * (FRAMES - 1)
    assert all(is_keyframe(mime, key) for _, key in loop.frames)
    assert is_keyframe(mime, loop.frames[0][0])


def test_spec_rejects_unknown_codec_and_odd_sizes() -> None:
    with pytest.raises(ValueError, match="codec"):
        VideoLoopSpec(codec="mpeg2")
    with pytest.raises(ValueError, match="even"):
        VideoLoopSpec(width=641)
    assert VideoLoopSpec(codec="H.264").codec == "h264"

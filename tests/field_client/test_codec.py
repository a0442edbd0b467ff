"""Video codec names: the spellings taken, and the MIME type each one sends as."""

from __future__ import annotations

import pytest

from field_client.codec import normalize_codec, video_mime_type


@pytest.mark.parametrize(("name", "codec"), [("vp8", "vp8"), ("VP8", "vp8"), ("video/VP8", "vp8"),
                                             ("h264", "h264"), ("H.264", "h264"), ("video/H264", "h264")])
def test_codec_names_are_normalized(name: str, codec: str) -> None:
    assert normalize_codec(name) == codec


def test_unknown_codecs_are_refused() -> None:
    for name in ("av1", "mpeg2", "video/VP9", ""):
        with pytest.raises(ValueError, match="expected vp8 or h264"):
            normalize_codec(name)
    with pytest.raises(ValueError):
        video_mime_type("av1")


def test_mime_types_are_what_aiortc_names_the_codecs() -> None:
    assert video_mime_type("vp8") == "video/VP8"
    assert video_mime_type("H.264") == "video/H264"

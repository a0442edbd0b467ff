"""Video codec names as the field client takes them (``--codec``, loop specs): ``vp8`` or ``h264``."""

from __future__ import annotations

VIDEO_MIME_TYPES = {"vp8": "video/VP8", "h264": "video/H264"}


def normalize_codec(name: str) -> str:
    """``"vp8"`` or ``"h264"`` for names like ``VP8``, ``video/H264``, ``h.264``; else ValueError."""
    key = name.lower().removeprefix("video/").replace(".", "")
    if key not in VIDEO_MIME_TYPES:
        raise ValueError(f"unsupported video codec {name!r}: expected vp8 or h264")
    return key


def video_mime_type(codec: str) -> str:
    """The RTP MIME type (``video/VP8``, ``video/H264``) of any name :func:`normalize_codec` takes."""
    return VIDEO_MIME_TYPES[normalize_codec(codec)]

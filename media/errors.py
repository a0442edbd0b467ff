"""Exceptions of the media layer. The server maps them to wire errors in one place."""


class MediaError(Exception):
    """Base of media-layer failures."""


class SdpError(MediaError):
    """An SDP offer was malformed, hostile or asks for something we do not support."""


class CodecMismatch(MediaError):
    """A viewer cannot receive the codec the publisher sends."""

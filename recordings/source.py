"""What the archive needs from a unit's source of encoded frames.

The recorder does not know where frames come from: the server hands
:meth:`~recordings.archive.ArchiveService.publish_started` an object with these three methods
(the relay's ``media.relay.Channel`` has them). Taps are called on the event loop for every
frame the source forwards, so they must return at once; :meth:`FrameSource.request_keyframe`
is called on the event loop too (the archive moves requests from its writer threads there).
"""

from __future__ import annotations

from typing import Callable, Protocol


class EncodedFrame(Protocol):
    """One encoded frame as a source hands it to its taps (``av.Packet`` is one): its bytes and
    its media timestamp (90 kHz video, 48 kHz Opus; ``None`` counts as 0)."""

    @property
    def pts(self) -> int | None: ...

    def __bytes__(self) -> bytes: ...


FrameTap = Callable[[EncodedFrame, bool], None]
"""``tap(frame, keyframe)``: called for every frame of one kind; must not block."""


class FrameSource(Protocol):
    """A unit's frames, by kind (``"video"``, ``"audio"``)."""

    def add_tap(self, kind: str, tap: FrameTap) -> None:
        """Call ``tap`` for every frame of ``kind`` from now on."""
        ...

    def remove_tap(self, kind: str, tap: FrameTap) -> None:
        """Stop calling ``tap``; a tap that is not there is ignored."""
        ...

    def request_keyframe(self, reason: str) -> None:
        """Ask the publisher for a video keyframe (the source may coalesce requests)."""
        ...

"""Frames from forwarded RTP packets, once per stream, for the recorder and other frame taps.

A video frame is the run of contiguous sequence numbers after the previous frame's last packet
up to the packet with the marker bit (RFC 7741 §4.1, RFC 6184 §5.1), all with one timestamp.
Packets may arrive out of order (the publisher's retransmissions); a frame whose packets are
still missing after ``wait_s`` is dropped, and so is every frame after it until a keyframe, so a
tap never sees a broken frame. An audio packet is a frame; audio packets are handed on in sequence
order, a reordered one waiting up to ``audio_wait_s`` for those before it (audio is not NACKed: a
missing one is skipped then). Depayloading uses aiortc's public
``aiortc.codecs.depayload``, the code its own receivers use, so the frames are byte-identical to
those the frame engine produced. Frames go to ``emit`` as :class:`media._assembly.Frame` (bytes
and pts: :class:`recordings.source.EncodedFrame`).

Runs on the event loop, synchronously, as packets arrive: a hand-off to a thread per frame costs
more than assembling it (DESIGN.md: ~31 µs of CPU per hop). :func:`frame_assembler` gives the
native one (:class:`media._assembly.Assembler`, media/_assembly.c) with the native data plane;
:class:`FrameAssembler` is its reference, held to it by tests/media/test_assembly.py.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from aiortc.codecs import depayload

from . import _assembly
from ._assembly import Frame
from .keyframes import is_keyframe, payload_starts_keyframe
from .rtpwire import seq_delta

Emit = Callable[[Frame, bool], None]  # (frame, keyframe)

PendingState = tuple[int | None, float | None, bool, tuple[tuple[int, int, bool, bytes], ...]]


class Assembler(Protocol):
    """What :class:`FrameAssembler` and :class:`media._assembly.Assembler` both are."""

    codec_key: tuple[str, int]
    frames: int
    dropped: int

    def push(self, seq: int, ts: int, marker: bool, payload: bytes, now: float, /) -> None: ...

    def restart(self) -> None: ...

    def state(self) -> PendingState: ...


def codec_kind(mime: str) -> int:
    """The native assembler's kind for a (lower-case) mime type."""
    if mime == "video/vp8":
        return _assembly.KIND_VP8
    if mime == "video/h264":
        return _assembly.KIND_H264
    return _assembly.KIND_VIDEO if mime.startswith("video/") else _assembly.KIND_AUDIO


def frame_assembler(codec: Any, emit: Emit, on_loss: Callable[[], None], *, native: bool, wait_s: float = 1.0,
                    audio_wait_s: float = 0.15) -> Assembler:
    """The native assembler, or (``native`` false) the reference."""
    if not native:
        return FrameAssembler(codec, emit, on_loss, wait_s, audio_wait_s)
    mime = codec.mimeType.lower()
    return _assembly.Assembler(codec_kind(mime), (mime, codec.clockRate), emit, on_loss,
                               wait_s, audio_wait_s)


class FrameAssembler:
    MAX_PENDING = 1024  # media/_assembly.c has the same limits (pinned by a test)
    AUDIO_MAX_PENDING = 32  # packets (0.64 s of 20 ms Opus)

    def __init__(self, codec: Any, emit: Emit, on_loss: Callable[[], None], wait_s: float = 1.0,
                 audio_wait_s: float = 0.15) -> None:
        self._codec = codec
        self._mime = codec.mimeType.lower()
        self.codec_key = (self._mime, codec.clockRate)
        self._video = self._mime.startswith("video/")
        self._emit = emit
        self._on_loss = on_loss
        self._wait_s = wait_s
        self._audio_wait_s = audio_wait_s
        self._pending: dict[int, tuple[int, bool, bytes]] = {}
        self._next: int | None = None  # first sequence number of the next frame
        self._stalled_since: float | None = None
        self._need_keyframe = True
        self._last_ts: int | None = None
        self._pts = 0
        self.frames = 0
        self.dropped = 0

    def restart(self) -> None:
        """Forget partial frames (a new source, or taps after a time without any); the next frame
        handed on is a keyframe. Presentation times stay continuous."""
        self._pending.clear()
        self._next = None
        self._stalled_since = None
        self._need_keyframe = True

    def state(self) -> PendingState:
        """(first sequence number of the next frame, stalled since, waiting for a keyframe, the
        pending packets in numeric order): what tests compare with the native assembler's."""
        pending = tuple((seq, *self._pending[seq]) for seq in sorted(self._pending))
        return self._next, self._stalled_since, self._need_keyframe, pending

    def push(self, seq: int, ts: int, marker: bool, payload: bytes, now: float) -> None:
        if not self._video:
            self._push_audio(seq, ts, payload, now)
            return
        if self._next is None:
            # Waiting for the first packet of a keyframe; keep what arrives meanwhile, since on
            # a jittery link the rest of that keyframe may well arrive before its first packet.
            if len(self._pending) >= self.MAX_PENDING:
                self._pending.clear()
            self._pending[seq] = (ts, marker, payload)
            if not payload_starts_keyframe(self._mime, payload):
                return
            self._next = seq
            for s in [s for s in self._pending if seq_delta(s, seq) < 0]:
                del self._pending[s]
        else:
            if seq_delta(seq, self._next) < 0:
                first = self._pending.get(self._next)
                if not (first is not None and first[0] == ts and payload_starts_keyframe(self._mime, payload)):
                    return  # its frame was emitted or dropped already
                self._next = seq  # an earlier start of the same keyframe (H.264: SPS/PPS before the IDR)
            self._pending[seq] = (ts, marker, payload)
        self._drain(now)

    def _push_audio(self, seq: int, ts: int, payload: bytes, now: float) -> None:
        pending = self._pending
        if self._next is None:
            self._next = seq
        elif seq_delta(seq, self._next) < 0:
            return  # late: its time is past (a packet skipped, or a duplicate)
        pending[seq] = (ts, True, payload)
        while self._next is not None:
            entry = pending.pop(self._next, None)
            if entry is not None:
                self._frame(entry[0], [entry[2]])
                self._next = (self._next + 1) & 0xFFFF
                self._stalled_since = None
                continue
            if not pending:
                break
            if self._stalled_since is None:
                self._stalled_since = now
            if now - self._stalled_since <= self._audio_wait_s and len(pending) <= self.AUDIO_MAX_PENDING:
                break
            resume = min(pending, key=lambda s: seq_delta(s, self._next or 0))
            self.dropped += seq_delta(resume, self._next)  # lost: go on with the next that arrived
            self._next = resume
            self._stalled_since = None

    def _drain(self, now: float) -> None:
        pending = self._pending
        while self._next is not None:
            start = self._next
            seq = start
            first = pending.get(seq)
            if first is None:
                break
            ts = first[0]
            parts: list[bytes] = []
            complete = False
            while True:
                entry = pending.get(seq)
                if entry is None:
                    break
                if entry[0] != ts:  # next frame began without our marker: its packet was lost
                    break
                parts.append(entry[2])
                if entry[1]:
                    complete = True
                    break
                seq = (seq + 1) & 0xFFFF
            if complete:
                for k in range(len(parts)):
                    pending.pop((start + k) & 0xFFFF, None)
                self._next = (seq + 1) & 0xFFFF
                self._stalled_since = None
                self._frame(ts, parts)
                continue
            if entry is not None:  # timestamp changed: the frame lost its end, drop it
                self._drop(start, seq)
                continue
            break
        if not pending:
            self._stalled_since = None
            return
        if self._stalled_since is None:
            self._stalled_since = now
        elif now - self._stalled_since > self._wait_s or len(pending) > self.MAX_PENDING:
            self._skip_gap()
            self._stalled_since = None
            self._drain(now)

    def _drop(self, start: int, end: int) -> None:
        """Drop the packets of an incomplete frame, ``start`` up to (excluding) ``end``."""
        seq = start
        while seq != end:
            self._pending.pop(seq, None)
            seq = (seq + 1) & 0xFFFF
        self._next = end
        self._lost()

    def _skip_gap(self) -> None:
        """Give up on the frame at ``_next``: resume at the first packet after a marker, or at a
        keyframe start, among those that arrived after its first packet (never at that packet: a
        keyframe that lost a packet for good would be waited for again, for ever)."""
        assert self._next is not None
        candidates = sorted(self._pending, key=lambda s: seq_delta(s, self._next or 0))
        resume = None
        for s in candidates:
            if s == self._next:
                continue
            prev = self._pending.get((s - 1) & 0xFFFF)
            if (prev is not None and prev[1]) or payload_starts_keyframe(self._mime, self._pending[s][2]):
                resume = s
                break
        if resume is None:
            self._pending.clear()
            self._next = None
        else:
            for s in candidates:
                if s == resume:
                    break
                del self._pending[s]
            self._next = resume
        self._lost()

    def _lost(self) -> None:
        # Every loss asks (the fanout coalesces requests): one after the first would be needed
        # anyway when the keyframe asked for was itself lost.
        self.dropped += 1
        self._need_keyframe = True
        self._on_loss()

    def _frame(self, ts: int, parts: list[bytes]) -> None:
        codec = self._codec
        data = b"".join(depayload(codec, p) for p in parts) if self._video else parts[0]
        keyframe = is_keyframe(self._mime, data) if self._video else True
        if self._need_keyframe and self._video:
            if not keyframe:
                return
        self._need_keyframe = False
        if self._last_ts is not None:
            self._pts += (ts - self._last_ts) & 0xFFFFFFFF
        self._last_ts = ts
        frame = Frame(data, self._pts)
        self.frames += 1
        self._emit(frame, keyframe)

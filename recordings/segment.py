"""One recording segment: encoded frames muxed into Matroska without decoding or encoding.

VP8 video goes into WebM (``.webm``), H.264 into Matroska (``.mkv``); audio is Opus in both.
The muxer writes every packet through (``flush_packets``) and closes a cluster at least every
second, so a writer killed mid-segment leaves a file that plays up to about a second before the
kill (measured: a writer killed 9.5 s in kept 8.8-9.0 s; plain MP4 kept nothing). A segment is
written as ``<name>.part`` and becomes ``<name>`` only when :meth:`SegmentWriter.close_container`
has closed it and :meth:`SegmentWriter.finalize` has fsynced it, renamed it, fsynced its
directory and hashed it.

The streams are created with ``add_stream`` for the matching encoder because that is how PyAV
gives a muxer the codec parameters it needs (frame size; the OpusHead extradata without which
Opus in Matroska is unreadable); those codec contexts never see a frame, only packets are muxed.
"""

from __future__ import annotations

import fractions
import os
from dataclasses import dataclass, field
from pathlib import Path

import av
from av.container import InputContainer

from .durable import fsync_dir, fsync_file, is_disk_full, sha256_file

VIDEO_TIME_BASE = fractions.Fraction(1, 90_000)
AUDIO_TIME_BASE = fractions.Fraction(1, 48_000)
OFFSET_TAG = "DISPATCH_OFFSET_S"  # Matroska tag: seconds from the recording's start to the segment's time 0

# video codec -> (container format, file extension, the codec the stream is labelled with)
_FORMATS: dict[str, tuple[str, str, str]] = {
    "vp8": ("webm", ".webm", "vp8"), "h264": ("matroska", ".mkv", "h264")}


class SegmentError(Exception):
    """A segment could not be written; ``disk_full`` tells ENOSPC/EDQUOT apart from other faults."""

    def __init__(self, message: str, *, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full


def segment_offset(container: InputContainer) -> float:
    """Where a segment's time 0 sits on its recording's timeline (its :data:`OFFSET_TAG`), in
    seconds; 0 for a file without the tag."""
    tags = {k.upper(): v for k, v in container.metadata.items()}
    try:
        return float(tags.get(OFFSET_TAG, "0"))
    except ValueError:
        return 0.0


def extension(video_codec: str | None) -> str:
    return _FORMATS.get(video_codec or "vp8", _FORMATS["vp8"])[1]


def vp8_frame_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe header (RFC 6386 §9.1)."""
    if len(data) < 10 or data[0] & 1 or data[3:6] != b"\x9d\x01\x2a":
        return None
    return int.from_bytes(data[6:8], "little") & 0x3FFF, int.from_bytes(data[8:10], "little") & 0x3FFF


def h264_frame_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of an H.264 keyframe, by decoding that one frame (SPS parsing by hand
    is error-prone; one decode per segment costs a few milliseconds)."""
    try:
        ctx = av.CodecContext.create("h264", "r")
        frames = ctx.decode(av.Packet(data)) + ctx.decode(None)
    except av.FFmpegError:
        return None
    return (frames[0].width, frames[0].height) if frames else None


def frame_size(video_codec: str, data: bytes) -> tuple[int, int] | None:
    return vp8_frame_size(data) if video_codec == "vp8" else h264_frame_size(data)


@dataclass
class SealedSegment:
    path: Path
    sha256: str
    bytes: int
    frames: dict[str, int]
    first_pts: dict[str, int]
    last_pts: dict[str, int]
    offset_s: float


@dataclass
class SegmentWriter:
    """Mux packets of one segment. Not thread-safe: one writer thread owns it."""

    final_path: Path
    video_codec: str | None  # "vp8", "h264" or None (audio only)
    audio: bool
    size: tuple[int, int] | None = None
    frames: dict[str, int] = field(default_factory=lambda: {"video": 0, "audio": 0})
    first_pts: dict[str, int] = field(default_factory=dict)
    last_pts: dict[str, int] = field(default_factory=dict)
    offset_s: float | None = None  # where the segment's time 0 sits on the recording's timeline

    def __post_init__(self) -> None:
        self.part_path = self.final_path.with_name(self.final_path.name + ".part")
        fmt = _FORMATS.get(self.video_codec or "vp8", _FORMATS["vp8"])
        try:
            self._container = av.open(
                str(self.part_path), "w", format=fmt[0],
                options={"flush_packets": "1", "cluster_time_limit": "1000", "cluster_size_limit": "2097152"},
            )
            self._video = None
            self._audio = None
            if self.video_codec is not None:
                # A stream without a codec context: an encoder stream (libvpx, libx264) would be
                # opened with the container, ~8 MB of encoder state per recording for nothing.
                width, height = self.size or (640, 480)
                self._video = self._container.add_mux_stream(fmt[2], rate=30, width=width, height=height)
                self._video.time_base = VIDEO_TIME_BASE
            if self.audio:
                self._audio = self._container.add_stream("libopus", rate=48_000)
                self._audio.layout = "stereo"
                self._audio.time_base = AUDIO_TIME_BASE
        except (OSError, av.FFmpegError) as exc:
            self.abort()
            raise SegmentError(f"cannot open segment {self.part_path.name}: {exc}",
                               disk_full=is_disk_full(exc)) from exc

    def write(self, kind: str, data: bytes, pts: int, keyframe: bool) -> None:
        """``pts`` on the recording's timeline (90 kHz video, 48 kHz audio); the file counts from
        its own first frame, so every segment plays from 0 (``offset_s`` says where it sits)."""
        stream = self._video if kind == "video" else self._audio
        if stream is None:
            return
        rate = 90_000 if kind == "video" else 48_000
        if self.offset_s is None:
            self.offset_s = pts / rate
            # The header is written with the first packet: the offset goes in as a tag, so a
            # segment recovered after a crash still knows where it sits.
            self._container.metadata[OFFSET_TAG] = f"{self.offset_s:.6f}"
        base = round(self.offset_s * rate)
        pts = max(pts, base)
        last = self.last_pts.get(kind)
        tick = rate // 1000  # Matroska keeps milliseconds: a smaller step would collide
        if last is not None and pts < last + tick:
            pts = last + tick  # the muxer needs strictly increasing timestamps per stream
        packet = av.Packet(data)
        packet.pts = packet.dts = pts - base
        packet.time_base = VIDEO_TIME_BASE if kind == "video" else AUDIO_TIME_BASE
        packet.stream = stream
        if keyframe:
            packet.is_keyframe = True
        try:
            self._container.mux(packet)
        except (OSError, av.FFmpegError) as exc:
            raise SegmentError(f"cannot write segment {self.part_path.name}: {exc}",
                               disk_full=is_disk_full(exc)) from exc
        self.first_pts.setdefault(kind, pts)
        self.last_pts[kind] = pts
        self.frames[kind] += 1

    def close_container(self) -> None:
        """Write the trailer (cheap, no fsync): the muxing thread can move on to the next segment."""
        try:
            self._container.close()
        except (OSError, av.FFmpegError) as exc:
            self.abort()
            raise SegmentError(f"cannot close segment {self.part_path.name}: {exc}",
                               disk_full=is_disk_full(exc)) from exc

    def finalize(self) -> SealedSegment:
        """fsync, rename to the final name, fsync the directory, hash (the slow, durable part)."""
        try:
            fsync_file(self.part_path)
            os.rename(self.part_path, self.final_path)
            fsync_dir(self.final_path.parent)
        except OSError as exc:
            self.abort()
            raise SegmentError(f"cannot seal segment {self.final_path.name}: {exc}",
                               disk_full=is_disk_full(exc)) from exc
        digest, size = sha256_file(self.final_path)
        return SealedSegment(self.final_path, digest, size, dict(self.frames), dict(self.first_pts),
                             dict(self.last_pts), self.offset_s or 0.0)

    def abort(self) -> None:
        """Drop the unsealed file: nothing partial is ever listed in the ledger."""
        container = getattr(self, "_container", None)
        if container is not None:
            try:
                container.close()
            except Exception:
                pass
        try:
            self.part_path.unlink()
        except FileNotFoundError:
            pass

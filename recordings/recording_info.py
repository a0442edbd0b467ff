"""What a recording is of, and what its writer has done so far."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from utctime import iso_millis


@dataclass(frozen=True)
class RecordingInfo:
    """What a recording is of; written to the ledger when it opens and to ``recording.json``."""

    recording_id: str
    unit_id: str
    action_id: str | None
    case_number: str | None
    officers: tuple[str, ...]
    category: str
    node: str
    video_codec: str | None
    audio_codec: str | None

    def opened_entry(self, opened_at: float) -> dict[str, Any]:
        """The data of the ``recording_opened`` ledger entry."""
        return {
            "recording_id": self.recording_id, "unit_id": self.unit_id, "action_id": self.action_id,
            "case_number": self.case_number, "officers": list(self.officers), "category": self.category,
            "node": self.node, "video_codec": self.video_codec, "audio_codec": self.audio_codec,
            "server_time": iso_millis(opened_at),
        }


@dataclass
class RecordingStats:
    """Counters for the archive's status; written by the writer threads, read anywhere."""

    frames: dict[str, int] = field(default_factory=lambda: {"video": 0, "audio": 0})
    dropped: int = 0  # frames not recorded: queue overflow, disk full, before the first keyframe
    segments: int = 0
    bytes: int = 0
    gaps: int = 0

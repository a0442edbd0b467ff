"""``recording.json``: what a closed recording is, next to its segments.

Written once, when the recording closes (or when recovery closes it after a crash), durably
(temporary file, fsync, rename, fsync of the directory); its SHA-256 goes into the
``recording_closed`` ledger entry, so the verifier checks it like a segment. Format:
``docs/archive-format.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from utctime import iso_millis

from .durable import fsync_dir
from .recording_info import RecordingInfo

FORMAT = "dispatch-recording/1"
METADATA_FILE = "recording.json"


def recording_metadata(info: RecordingInfo, *, reason: str, opened_at: float, closed_at: float,
                       resolution: tuple[int, int] | None, reanchors: Mapping[str, int],
                       segments: Sequence[dict[str, Any]], gaps: Sequence[dict[str, Any]], dropped_frames: int,
                       extra: Mapping[str, Any]) -> dict[str, Any]:
    """The ``recording.json`` of a recording the server closed. ``segments`` and ``gaps`` are the
    data of its ``segment_sealed`` and ``gap`` entries; ``extra`` what the rest of the server
    adds (GPS track, instructions)."""
    return {
        "format": FORMAT,
        "recording_id": info.recording_id, "unit_id": info.unit_id, "action_id": info.action_id,
        "case_number": info.case_number, "officers": list(info.officers), "category": info.category,
        "node": info.node,
        "codecs": {"video": info.video_codec, "audio": info.audio_codec},
        "resolution": list(resolution) if resolution else None,
        "clocks": {"server_opened": iso_millis(opened_at), "server_closed": iso_millis(closed_at),
                   "timeline": "media timestamps count from server_opened on the server clock",
                   "device_reanchors": dict(reanchors)},
        "close_reason": reason,
        "segments": list(segments),
        "gaps": list(gaps),
        "dropped_frames": dropped_frames,
        "extra": dict(extra),
    }


def write_metadata(directory: Path, meta: Mapping[str, Any]) -> str:
    """Write ``directory/recording.json`` durably; returns its hex SHA-256. Raises ``OSError``."""
    blob = json.dumps(meta, ensure_ascii=False, indent=1, sort_keys=True).encode()
    tmp = directory / f"{METADATA_FILE}.tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, directory / METADATA_FILE)
    fsync_dir(directory)
    return hashlib.sha256(blob).hexdigest()

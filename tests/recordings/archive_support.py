"""Reading an archive back in tests: ledger entries, segment files, ffprobe, packets."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import av

FFPROBE = "/usr/bin/ffprobe"


def entries(archive: Path) -> list[dict[str, Any]]:
    path = archive / "ledger" / "entries.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def of_type(archive: Path, type: str, recording_id: str | None = None) -> list[dict[str, Any]]:
    return [e["data"] for e in entries(archive)
            if e["type"] == type and (recording_id is None or e["data"].get("recording_id") == recording_id)]


def ffprobe(path: Path) -> dict[str, Any]:
    """ffprobe with error logging; fails the test if ffprobe complains about anything."""
    out = subprocess.run(
        [FFPROBE, "-v", "error", "-count_packets", "-show_entries",
         "format=duration:stream=codec_type,codec_name,width,height,nb_read_packets", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0 and not out.stderr.strip(), f"ffprobe {path.name}: rc={out.returncode} {out.stderr}"
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def packets(path: Path, timeline: bool = True) -> list[tuple[str, bytes, float]]:
    """(kind, payload, seconds) of every packet in file order; ``timeline``: seconds on the
    recording's timeline (the segment's offset tag added), else in the file."""
    out: list[tuple[str, bytes, float]] = []
    with av.open(str(path)) as c:
        tags = {k.upper(): v for k, v in c.metadata.items()}
        offset = float(tags.get("DISPATCH_OFFSET_S", "0")) if timeline else 0.0
        for p in c.demux():
            if p.size == 0 or p.pts is None:
                continue
            out.append((p.stream.type, bytes(p), offset + float(p.pts * p.time_base)))
    return out


def segment_paths(archive: Path, recording_id: str) -> list[Path]:
    sealed = sorted(of_type(archive, "segment_sealed", recording_id), key=lambda s: s["seq"])
    return [archive / s["path"] for s in sealed]

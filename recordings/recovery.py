"""Crash recovery: make the files on disk and the ledger agree again after ``kill -9``.

Run once at start, before anything records. For every recording the ledger shows open:
- each ``*.part`` segment is remuxed packet by packet (no transcoding) into its final name, up to
  the last complete packet, and sealed with ``recovered: true``;
- a sealed segment file the ledger does not list (killed between rename and ledger append) is
  appended as it is, also ``recovered: true``;
- the time between the last recorded frame and the restart becomes a ``gap`` (``server_fault``);
- the recording is closed (outcome ``recovered``) with its ``recording.json``.
Segments of recordings already closed are never touched.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from utctime import iso_millis, parse_iso

from .durable import fsync_dir, fsync_file, sha256_file
from .gaps import gap_entry
from .ledger_spool import LedgerWriter
from .metadata import FORMAT, write_metadata
from .segment import OFFSET_TAG, segment_offset
from .timeline import RATES

logger = logging.getLogger(__name__)

SEGMENT_SUFFIXES = (".webm", ".mkv")


@dataclass
class _Open:
    opened: dict[str, Any]
    segments: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)


def remux_part(part: Path, final: Path) -> dict[str, Any] | None:
    """Copy every complete packet of a torn segment into a clean file; None if it held none."""
    counts = {"video": 0, "audio": 0}
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    try:
        src = av.open(str(part))
    except (av.FFmpegError, OSError) as exc:
        logger.warning("recovery: %s unreadable (%s); removed", part, exc)
        return None
    offset_s = segment_offset(src)
    tmp = final.with_name(final.name + ".recovering")
    try:
        fmt = "webm" if final.suffix == ".webm" else "matroska"
        dst = av.open(str(tmp), "w", format=fmt)
        dst.metadata[OFFSET_TAG] = f"{offset_s:.6f}"
        out = {}
        for s in src.streams:
            if s.type in ("video", "audio"):
                out[s.index] = (dst.add_stream_from_template(s), s.type)
        try:
            for packet in src.demux(*[s for s in src.streams if s.index in out]):
                if packet.size == 0 or packet.pts is None or packet.is_corrupt:
                    continue
                stream, kind = out[packet.stream.index]
                rate = RATES[kind]
                pts = int((packet.pts * packet.time_base + offset_s) * rate)
                packet.stream = stream
                dst.mux(packet)
                counts[kind] += 1
                first.setdefault(kind, pts)
                last[kind] = pts
        except (av.FFmpegError, OSError) as exc:
            logger.info("recovery: %s ends in a torn packet (%s)", part.name, exc)
        dst.close()
    finally:
        src.close()
    if not any(counts.values()):
        tmp.unlink(missing_ok=True)
        return None
    fsync_file(tmp)
    os.rename(tmp, final)
    fsync_dir(final.parent)
    return {"frames": counts, "pts": {k: [first[k], last[k]] for k in first}, "offset_s": offset_s}


def recover(archive_root: Path, ledger: LedgerWriter, entries: list[dict[str, Any]], where: str,
            now: float | None = None) -> list[str]:
    """Seal, gap and close what a crash left open. Returns one note per thing done."""
    now = time.time() if now is None else now
    notes: list[str] = []
    open_recs: dict[str, _Open] = {}
    listed: set[str] = set()
    for e in entries:
        d = e.get("data", {})
        rid = d.get("recording_id")
        if e["type"] == "recording_opened":
            open_recs[rid] = _Open(d)
        elif e["type"] == "segment_sealed":
            listed.add(d["path"])
            if rid in open_recs:
                open_recs[rid].segments.append(d)
        elif e["type"] == "gap" and rid in open_recs:
            open_recs[rid].gaps.append(d)
        elif e["type"] == "recording_closed":
            open_recs.pop(rid, None)
        elif e["type"] == "segment_deleted":
            listed.add(d["path"])

    for rid, rec in open_recs.items():
        rdir = archive_root / "recordings" / rid
        opened_at = parse_iso(rec.opened["server_time"])
        last_end = max([parse_iso(s["end"]) for s in rec.segments] or [opened_at])
        for stray in sorted(rdir.glob("*.recovering")) + sorted(rdir.glob("*.tmp")):
            stray.unlink()
        candidates: dict[str, Path] = {}
        for p in sorted(rdir.iterdir()) if rdir.is_dir() else []:
            name = p.name.removesuffix(".part")
            if name.endswith(SEGMENT_SUFFIXES):
                candidates.setdefault(name, p)
                if p.name.endswith(".part"):
                    candidates[name] = p
        for name, p in sorted(candidates.items()):
            final = rdir / name
            rel = final.relative_to(archive_root).as_posix()
            if rel in listed:
                if p.name.endswith(".part"):
                    p.unlink()  # a leftover of a segment sealed before the crash
                continue
            if p.name.endswith(".part"):
                info = remux_part(p, final)
                p.unlink(missing_ok=True)
                fsync_dir(rdir)
                if info is None:
                    notes.append(f"{rel}: torn segment held no complete frame; removed")
                    continue
                what = "torn segment remuxed"
            else:
                info = _probe(final)
                what = "sealed segment missing from the ledger"
            digest, size = sha256_file(final)
            pts = info["pts"]
            start = opened_at + min(v[0] / RATES[k] for k, v in pts.items())
            end = opened_at + max(v[1] / RATES[k] for k, v in pts.items())
            data = {"recording_id": rid, "seq": int(name.split(".")[0]), "path": rel, "sha256": digest,
                    "bytes": size, "start": iso_millis(start), "end": iso_millis(end), "frames": info["frames"],
                    "recovered": True, "offset_s": round(info["offset_s"], 6), "pts": pts}
            ledger.append("segment_sealed", actor="system", where=where, outcome="recovered", data=data)
            rec.segments.append(data)
            last_end = max(last_end, end)
            notes.append(f"{rel}: {what}, sealed as recovered ({size} bytes)")
        gap = gap_entry(rid, last_end, now, "server_fault")
        ledger.append("gap", actor="system", where=where, outcome="recovered", data=gap)
        rec.gaps.append(gap)
        meta = {
            "format": FORMAT, **{k: rec.opened.get(k) for k in (
                "recording_id", "unit_id", "action_id", "case_number", "officers", "category", "node")},
            "codecs": {"video": rec.opened.get("video_codec"), "audio": rec.opened.get("audio_codec")},
            "clocks": {"server_opened": rec.opened.get("server_time"), "server_closed": iso_millis(now)},
            "close_reason": "server fault: closed by recovery at restart",
            "segments": rec.segments, "gaps": rec.gaps,
        }
        digest = write_metadata(rdir, meta) if rdir.is_dir() else ""
        ledger.append("recording_closed", actor="system", where=where, outcome="recovered", data={
            "recording_id": rid, "segments": len(rec.segments), "reason": "server_fault",
            "metadata_sha256": digest, "server_time": iso_millis(now)})
        notes.append(f"recording {rid}: closed by recovery with a server_fault gap of {gap['seconds']} s")
    return notes


def _probe(path: Path) -> dict[str, Any]:
    counts: dict[str, int] = defaultdict(int)
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    with av.open(str(path)) as c:
        offset_s = segment_offset(c)
        for packet in c.demux():
            if packet.size == 0 or packet.pts is None:
                continue
            kind = packet.stream.type
            pts = int((packet.pts * packet.time_base + offset_s) * RATES[kind])
            counts[kind] += 1
            first.setdefault(kind, pts)
            last[kind] = pts
    return {"frames": {"video": counts["video"], "audio": counts["audio"]},
            "pts": {k: [first[k], last[k]] for k in first}, "offset_s": offset_s}

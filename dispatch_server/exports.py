"""Exports of approved footage requests: redact, watermark, package with proofs; the court
watches the result and releases it; only then does the party get a link.

One export runs per ``party.export_workers`` at a time in worker threads (the work is CPU-bound
and releases the GIL in FFmpeg and OpenCV). Progress goes to the request (stored about every
two seconds, pushed to consoles and the party's portal at most once a second). A server that
stops mid-export cancels it (nothing half-written is kept) and starts it again at the next start.

A finished export waits in state ``review``: a person who may decide requests watches it, as the
party would receive it (redacted, watermarked: :meth:`ExportService.preview`, ledger ``played``
with ``what: preview``), and releases it (:meth:`ExportService.release`, ledger
``export_released``), which issues the download link. Nobody can release what they have not
watched; a region found missing is added and the export run again. Blur regions must lie inside
the frame (refused with a message otherwise).

The package (``recordings.package``) holds the export, the ledger entries of the source
segments with their inclusion proofs and a signed tree head, what was redacted and why, and the
completeness statement of the action: every unit, its recorded intervals and every gap with its
cause, signed by the server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import os
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

from recordings.archive import ArchiveService
from recordings.durable import fsync_dir
from recordings.export import ExportCancelled, ExportError, export_recording, review_keyframe
from recordings.package import build_package, load_signing_key
from recordings.redaction import Region
from recordings.watermark import WatermarkSpec
from utctime import iso_millis, parse_iso

from .actions import ActionStore
from .errors import BadRequest, Conflict, NotFound
from .export_sources import ExportSources
from .footage_requests import BlurRegion, FootageRequests
from .metrics import Metrics
from .party_links import PartyLinks

logger = logging.getLogger(__name__)

PART = ".part"  # an export folder being built, not yet in the ledger
PROGRESS_EMIT_S = 1.0
PROGRESS_STORE_S = 2.0


def load_link_secret(path: Path) -> bytes:
    """32 random bytes that derive link tokens from link ids (created at first start, mode 0600)."""
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
        f.flush()
        os.fsync(f.fileno())
    return secret


class ExportService:
    def __init__(self, requests: FootageRequests, links: PartyLinks, archive: ArchiveService, actions: ActionStore,
                 sources: ExportSources, export_dir: Path, signing_key_path: Path, link_secret: bytes, workers: int,
                 time_zone: dt.tzinfo = dt.timezone.utc, clock: Callable[[], float] = time.time,
                 metrics: Metrics | None = None, watermark_font: str | None = None) -> None:
        self._metrics = metrics
        self._font = watermark_font
        self._requests = requests
        self._links = links
        self._archive = archive
        self._actions = actions
        self.sources = sources
        self._tz = time_zone
        self.dir = export_dir
        self._key_path = signing_key_path
        self._secret = link_secret
        self._sem = asyncio.Semaphore(workers)
        self._clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancels: dict[str, threading.Event] = {}
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # sources and review ------------------------------------------------------------------------
    async def recordings_for_decision(self, action_id: str) -> list[dict[str, Any]]:
        return await self.sources.recordings_for_decision(action_id)

    async def _recording(self, doc: dict[str, Any]) -> dict[str, Any]:
        rid = doc["decision"]["recording_id"]
        rec = await self.sources.recording(doc["action_id"], rid)
        if rec is None or not rec["segments"]:
            raise NotFound(f"recording {rid} has no segments left", code="no_segments")
        return rec

    def _paths(self, rec: dict[str, Any]) -> list[Path]:
        return [self._archive.root / s["path"] for s in sorted(rec["segments"], key=lambda s: s["seq"])]

    async def review(self, request_id: str, at_s: float) -> Any:
        """The keyframe at ``at_s`` with the boxes the export would blur; its size is noted on the
        request (regions are checked against it)."""
        doc = await self._requests.get(request_id)
        if not doc.get("decision") or doc["decision"].get("decision") != "approve":
            raise Conflict("review frames are for approved requests", code="not_approved")
        rec = await self._recording(doc)
        try:
            frame = await asyncio.to_thread(review_keyframe, self._paths(rec), at_s, regions=_regions(doc))
        except ExportError as exc:
            raise BadRequest(f"no frame at {at_s:g} s: {exc}", code="bad_time") from None
        if doc.get("frame") != {"width": frame.width, "height": frame.height}:
            doc["frame"] = {"width": frame.width, "height": frame.height}
            await self._requests.update(doc, emit=False)
        return frame

    async def frame_size(self, doc: dict[str, Any]) -> tuple[int, int]:
        """The recording's frame size (from the last review frame, else from its first keyframe)."""
        frame = doc.get("frame")
        if isinstance(frame, dict):
            return int(frame["width"]), int(frame["height"])
        reviewed = await self.review(doc["id"], 0.0)
        return reviewed.width, reviewed.height

    async def set_regions(self, request_id: str, regions: list[BlurRegion], who: str) -> dict[str, Any]:
        """Store the blur regions after checking that each lies inside the frame (400
        ``region_outside_frame`` naming the first that does not: nothing is stored)."""
        doc = await self._requests.get(request_id)
        if regions and doc.get("decision") and doc["decision"].get("decision") == "approve":
            width, height = await self.frame_size(doc)
            for n, r in enumerate(regions, 1):
                if r.x < 0 or r.y < 0 or r.x + r.w > width or r.y + r.h > height:
                    raise BadRequest(
                        f"区域 {n} 超出画面 / region {n} (x={r.x:g}, y={r.y:g}, w={r.w:g}, h={r.h:g}) reaches outside "
                        f"the {width}x{height} frame: draw it inside the picture", code="region_outside_frame")
        return await self._requests.set_regions(request_id, regions, who)

    # export --------------------------------------------------------------------------------------
    async def start_export(self, request_id: str, who: str) -> dict[str, Any]:
        doc = await self._requests.get(request_id)
        if doc["state"] not in ("approved", "failed", "review"):
            raise Conflict(f"request is {doc['state']}; only approved requests are exported", code="not_approved")
        doc["state"] = "exporting"
        doc["export"] = {"progress": 0.0, "started_by": who, "started_at": self._clock(), "error": None}
        doc["history"].append({"at": self._clock(), "by": f"user:{who}", "what": "export_started", "message": ""})
        await self._requests.update(doc)
        self._spawn(request_id)
        return doc

    def resume(self, docs: list[dict[str, Any]]) -> None:
        """Exports a stopped server left running start again."""
        for doc in docs:
            logger.warning("request %s: export interrupted by a restart; starting it again", doc["id"])
            self._spawn(doc["id"])

    def _spawn(self, request_id: str) -> None:
        if request_id in self._tasks or self._closing:
            return
        task = asyncio.ensure_future(self._run(request_id))
        self._tasks[request_id] = task
        task.add_done_callback(lambda t: self._tasks.pop(request_id, None))

    async def _run(self, request_id: str) -> None:
        async with self._sem:
            doc = await self._requests.get(request_id)
            cancel = threading.Event()
            self._cancels[request_id] = cancel
            loop = asyncio.get_running_loop()
            last = {"emit": 0.0, "store": 0.0}

            def progress(share: float) -> None:
                loop.call_soon_threadsafe(self._progress, doc, share, last)

            try:
                rec = await self._recording(doc)
                action = await self._actions.require(doc["action_id"])
                completeness = await self.sources.completeness(action)
                started = time.monotonic()
                result = await asyncio.to_thread(self._export, doc, rec, completeness, progress, cancel)
                if self._metrics is not None:
                    self._metrics.exports.labels("ok").inc()
                    self._metrics.export_seconds.observe(time.monotonic() - started)
            except ExportCancelled:
                logger.info("request %s: export cancelled (server stopping); resumes at the next start", request_id)
                return
            except Exception as exc:
                logger.exception("request %s: export failed", request_id)
                doc = await self._requests.get(request_id)
                doc["state"] = "failed"
                doc["export"] = {**(doc.get("export") or {}), "error": str(exc)}
                doc["history"].append({"at": self._clock(), "by": "system", "what": "failed", "message": str(exc)})
                await self._requests.update(doc)
                if self._metrics is not None:
                    self._metrics.exports.labels("failed").inc()
                await self._archive.record("exported", actor="system", where="exporter", outcome="failed",
                                           data={"request_id": request_id, "error": str(exc)})
                return
            finally:
                self._cancels.pop(request_id, None)
            await self._finish(request_id, result)

    def _progress(self, doc: dict[str, Any], share: float, last: dict[str, float]) -> None:
        now = time.monotonic()
        doc["export"]["progress"] = round(share, 3)
        if now - last["emit"] >= PROGRESS_EMIT_S or share >= 1.0:
            last["emit"] = now
            store = now - last["store"] >= PROGRESS_STORE_S
            if store:
                last["store"] = now
            task = asyncio.ensure_future(self._requests.update(dict(doc), emit=True) if store
                                         else self._requests.notify(dict(doc)))
            task.add_done_callback(lambda t: t.exception())

    def _export(self, doc: dict[str, Any], rec: dict[str, Any], completeness: dict[str, Any],
                progress: Callable[[float], None], cancel: threading.Event) -> dict[str, Any]:
        """Blocking: the export file, then the package. Runs in a worker thread."""
        decision = doc["decision"]
        segments = self._paths(rec)
        indexes = [s["ledger_index"] for s in sorted(rec["segments"], key=lambda s: s["seq"])]
        opened = parse_iso(rec["opened"])
        # Recording time 0 is the first frame of the first segment: offset from the recording's opening.
        first = next(s for s in rec["segments"] if s["seq"] == min(x["seq"] for x in rec["segments"]))
        origin = opened + float(first.get("offset_s", 0.0))
        start_s = max(0.0, decision["from"] - origin) if decision.get("from") else None
        end_s = decision["to"] - origin if decision.get("to") else None
        # Built in <id>.part/ (what verify reports as in progress); after its exported entry is in
        # the ledger the folder takes its final name (_finish, or recovery at the next start).
        out_dir = self.dir / f"{doc['id']}{PART}"
        if out_dir.exists():
            shutil.rmtree(out_dir)  # leftovers of an interrupted attempt
        out_dir.mkdir(parents=True)
        now = dt.datetime.fromtimestamp(self._clock(), dt.timezone.utc)
        spec = WatermarkSpec(recipient=doc["party_name"], exported_at=now, tz=self._tz, font=self._font,
                             recorded_from=dt.datetime.fromtimestamp(origin, dt.timezone.utc))
        result = export_recording(segments, out_dir / "export.mp4", start_s=start_s, end_s=end_s,
                                  regions=_regions(doc), watermark=spec, include_audio=decision["include_audio"],
                                  progress=progress, cancel=cancel)
        request = {"id": doc["id"], "case_number": doc["case_number"], "action_id": doc["action_id"],
                   "recipient": doc["party_name"], "approved_by": decision["by"],
                   "approved_at": iso_millis(decision["at"]), "reason": doc["reason"],
                   "recording_id": decision["recording_id"], "unit_id": rec["unit_id"],
                   "from": iso_millis(decision["from"]) if decision.get("from") else None,
                   "to": iso_millis(decision["to"]) if decision.get("to") else None,
                   "include_audio": decision["include_audio"],
                   "export_window_s": [round(result.start_s, 3), round(result.end_s, 3)],
                   "export_gaps": [{"start_s": round(g.start_s, 3), "end_s": round(g.end_s, 3)} for g in result.gaps]}
        redactions = [r.to_dict() for r in result.redactions]
        package_path = out_dir / f"{doc['id']}.zip"
        manifest = build_package(package_path, export_file=result.path, ledger=self._archive.ledger,
                                 source_indexes=indexes, request=request, redactions=redactions,
                                 completeness=completeness, signing_key=load_signing_key(self._key_path),
                                 export_duration_s=result.duration_s)
        final = self.dir / doc["id"]
        return {"export": result.to_dict(), "export_path": str(final / result.path.name),
                "package_path": str(final / package_path.name),
                "package_sha256": manifest["package_sha256"], "package_bytes": manifest["package_bytes"],
                "sources": len(indexes), "package_id": manifest.get("package_id")}

    async def _finish(self, request_id: str, result: dict[str, Any], recorded: bool = False) -> None:
        """The export is built: its ``exported`` entry (unless ``recorded`` already, before a
        crash), the folder under its final name, and the request waits for the court's release."""
        doc = await self._requests.get(request_id)
        doc["state"] = "review"
        doc["export"] = {**(doc.get("export") or {}), **result, "progress": 1.0, "finished_at": self._clock(),
                         "previewed_by": [], "released_by": None, "released_at": None}
        doc["history"].append({"at": self._clock(), "by": "system", "what": "exported",
                               "message": "export ready for review: watch it, then release it to the party"})
        if not recorded:
            root = self._archive.root
            await self._archive.record("exported", actor=f"user:{doc['export'].get('started_by')}", where="exporter",
                                       data={"request_id": request_id, "case_number": doc["case_number"],
                                             "recording_id": doc["decision"]["recording_id"],
                                             "export_path": Path(result["export_path"]).relative_to(root).as_posix(),
                                             "export_sha256": result["export"]["sha256"],
                                             "export_bytes": result["export"]["bytes"],
                                             "package_path": Path(result["package_path"]).relative_to(root).as_posix(),
                                             "package_sha256": result["package_sha256"],
                                             "package_bytes": result["package_bytes"], "sources": result["sources"]})
            await asyncio.to_thread(self._seal_folder, request_id)  # the entry is the commit point
        await self._requests.update(doc)

    # the court watches, then releases ------------------------------------------------------------
    async def preview(self, request_id: str, who: str, where: str) -> Path:
        """The redacted, watermarked export as the party will get it, for ``who`` to watch before
        releasing it (ledger ``played``, ``what: preview``)."""
        doc = await self._requests.get(request_id)
        export = doc.get("export") or {}
        if doc["state"] not in ("review", "ready") or not export.get("export_path"):
            raise Conflict(f"request is {doc['state']}: there is no finished export to watch", code="not_exported")
        path = Path(export["export_path"])
        if not await asyncio.to_thread(path.is_file):
            raise NotFound("the export file is missing from the archive", code="export_missing")
        await self._archive.record("played", actor=f"user:{who}", where=where,
                                   data={"request_id": request_id, "what": "preview"})
        if who not in export.get("previewed_by", []):
            doc["export"]["previewed_by"] = [*export.get("previewed_by", []), who]
            doc["history"].append({"at": self._clock(), "by": f"user:{who}", "what": "previewed", "message": ""})
            await self._requests.update(doc)
        return path

    async def release(self, request_id: str, who: str, where: str) -> dict[str, Any]:
        """Release the export to the party: only by someone who watched it; issues the link
        (ledger ``export_released``)."""
        doc = await self._requests.get(request_id)
        if doc["state"] != "review":
            raise Conflict(f"request is {doc['state']}, not waiting for release", code="not_in_review")
        export = doc["export"]
        if who not in export.get("previewed_by", []):
            raise Conflict("watch the export (预览) before releasing it: the party gets exactly this file",
                           code="not_previewed")
        link = await self._links.issue(doc, self.link_token)
        now = self._clock()
        doc["state"] = "ready"
        doc["export"] = {**export, "released_by": who, "released_at": now}
        doc["links"].append({**link, "revoked_at": None})
        doc["history"].append({"at": now, "by": f"user:{who}", "what": "released",
                               "message": f"released; link valid until {iso_millis(link['expires_at'])}"})
        await self._archive.record("export_released", actor=f"user:{who}", where=where, data={
            "request_id": request_id, "case_number": doc["case_number"], "package_sha256": export["package_sha256"],
            "export_sha256": export["export"]["sha256"], "link_id": link["id"],
            "link_expires": iso_millis(link["expires_at"])})
        await self._requests.update(doc)
        return doc

    def _seal_folder(self, request_id: str) -> None:
        """``exports/<id>.part`` → ``exports/<id>`` (durably): its ``exported`` entry is written."""
        part, final = self.dir / f"{request_id}{PART}", self.dir / request_id
        if final.exists():
            shutil.rmtree(final)  # an earlier export of the same request, superseded
        os.rename(part, final)
        fsync_dir(self.dir)

    def _recover(self) -> dict[str, dict[str, Any]]:
        """At start: finish the folder of an export whose ``exported`` entry was written before a
        crash (the ledger says it is committed), remove the others (their export runs again).
        Returns the committed exports' entry data by request id."""
        parts = sorted(self.dir.glob(f"*{PART}")) if self.dir.is_dir() else []
        if not parts:
            return {}
        committed = {e["data"]["request_id"]: e["data"] for e in self._archive.ledger.entries()
                     if e["type"] == "exported" and e["outcome"] == "ok" and "package_path" in e["data"]}
        for part in parts:
            rid = part.name[:-len(PART)]
            if rid in committed:
                self._seal_folder(rid)
            else:
                shutil.rmtree(part, ignore_errors=True)
        return committed

    def link_token(self, link_id: str) -> str:
        """The link's secret token, derived from its id: stored nowhere, shown to the party on demand."""
        return hmac.new(self._secret, link_id.encode(), hashlib.sha256).hexdigest()[:43]

    async def start(self) -> None:
        """Finish or remove what a crash left under ``exports/``; start again the exports a stop
        interrupted."""
        self._loop = asyncio.get_running_loop()
        committed = await asyncio.to_thread(self._recover)
        for doc in await self._requests.list(state="exporting"):
            data = committed.get(doc["id"])
            if data is None:
                self.resume([doc])
                continue
            root = self._archive.root  # finished, but the crash came before the record was updated
            await self._finish(doc["id"], {
                "export": {"sha256": data["export_sha256"], "bytes": data["export_bytes"]},
                "export_path": str(root / data["export_path"]), "package_path": str(root / data["package_path"]),
                "package_sha256": data["package_sha256"], "package_bytes": data["package_bytes"],
                "sources": data.get("sources")}, recorded=True)

    async def close(self) -> None:
        self._closing = True
        for cancel in self._cancels.values():
            cancel.set()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)


def _regions(doc: dict[str, Any]) -> list[Region]:
    return [Region(int(r["x"]), int(r["y"]), int(r["w"]), int(r["h"]), r["start_s"], r["end_s"], r["action"],
                   r.get("reason", "")) for r in doc.get("regions", [])]

"""State of one node read when Prometheus scrapes: sessions, links, relay counters, the archive,
open alerts and party requests.

Figures that need the database are read by :meth:`NodeFigures.refresh` (awaited by the
``/metrics`` handler before it renders), the rest straight from the services. The archive's
sealed segments, bytes and gaps are counted from its events as they happen (its own counters
restart with each recording). Disk "days left" divides free space by the archive's write rate
over the last hour (+Inf while nothing has been written).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from recordings.archive import ArchiveService
from utctime import parse_iso

from ..actions import ActionStore
from ..links import UnitLinks
from ..live import LiveService
from ..metrics import Metrics
from ..stores.database import Database
from ..stores.presence import PresenceStore
from .telemetry_frames import TelemetryHub

RATE_WINDOW_S = 3600.0


class NodeFigures(Collector):
    def __init__(self, metrics: Metrics, live: LiveService, links: UnitLinks, telemetry: TelemetryHub,
                 db: Database, actions: ActionStore, presence: PresenceStore, archive: ArchiveService | None) -> None:
        self._metrics = metrics
        self._registry = metrics.registry
        self._received: dict[str, tuple[int, int]] = {}  # publisher session -> (lost, received) at the last scrape
        self._live = live
        self._actions = actions
        self._presence = presence
        self._links = links
        self._telemetry = telemetry
        self._db = db
        self._archive = archive
        self._db_figures: dict[str, Any] = {"alerts_open": 0, "requests": {}}
        self._action_units = (0, 0)  # (units in running actions, of them offline)
        self.segments_sealed = 0
        self.bytes_sealed = 0
        self.gaps: dict[str, int] = {}
        self.stills = 0
        self._writes: deque[tuple[float, int]] = deque()  # (when, bytes) of the last hour

    # archive events (an ArchiveService listener, on the event loop) ---------------------------
    def archive_event(self, kind: str, detail: dict[str, Any]) -> None:
        if kind == "sealed":
            self.segments_sealed += 1
            size = int(detail.get("bytes") or 0)
            self.bytes_sealed += size
            self._writes.append((time.monotonic(), size))
        elif kind == "gap":
            cause = str(detail.get("cause") or "unknown")
            self.gaps[cause] = self.gaps.get(cause, 0) + 1
        elif kind == "snapshot":
            self.stills += 1
            self._writes.append((time.monotonic(), int(detail.get("bytes") or 0)))

    def start(self) -> None:
        """Join the registry (read at every scrape) and follow the archive's events."""
        self._registry.register(self)
        if self._archive is not None:
            self._archive.listeners.append(self.archive_event)

    def close(self) -> None:
        self._registry.unregister(self)
        if self._archive is not None and self.archive_event in self._archive.listeners:
            self._archive.listeners.remove(self.archive_event)

    # the database -------------------------------------------------------------------------------
    def _read_db(self) -> dict[str, Any]:
        alerts_open = int(self._db.query("SELECT COUNT(*) FROM alerts WHERE state='open'")[0][0])
        requests = {state: int(n) for state, n in
                    self._db.query("SELECT state, COUNT(*) FROM footage_requests GROUP BY state")}
        return {"alerts_open": alerts_open, "requests": requests}

    async def refresh(self) -> None:
        self._db_figures = await self._db.run(self._read_db)
        for delay in self._live.take_first_frames():
            self._metrics.first_frame_seconds.observe(delay)
        await self._sample_loss()
        team = {u for action in await self._actions.list("running") for u in action.units}
        presence = await self._presence.all()
        self._action_units = (len(team), sum(1 for u in team if not (presence.get(u) and presence[u].online)))

    async def _sample_loss(self) -> None:
        """Each publisher's packet loss since the last scrape, from its RTP reception statistics."""
        seen: dict[str, tuple[int, int]] = {}
        for session in list(self._live.publishers.values()):
            counts = await session.packet_counts()
            if counts is None:
                continue
            lost, received = seen[session.id] = counts
            before = self._received.get(session.id, (0, 0))
            new_lost, new_received = max(0, lost - before[0]), max(0, received - before[1])
            if new_lost + new_received:
                self._metrics.packet_loss_ratio.observe(new_lost / (new_lost + new_received))
        self._received = seen

    # the scrape -------------------------------------------------------------------------------
    def collect(self) -> Iterator[Any]:
        live = self._live
        yield _gauge("dispatch_publishers", "Units publishing media to this node", len(live.publishers))
        yield _gauge("dispatch_viewers", "Viewing sessions on this node", len(live.viewers))
        yield _gauge("dispatch_connected_units", "Units with a Socket.IO link to this node", len(self._links.units()))
        yield _gauge("dispatch_telemetry_channels", "Open telemetry channels", self._telemetry.stats.channels)
        counters = live.relay_counters()
        for name, help_text in (("frames_in", "Encoded frames received from publishers"),
                                ("bytes_in", "Bytes of encoded frames received from publishers"),
                                ("frames_out", "Frames handed to viewers"),
                                ("overflows", "Viewer queue overflows (a slow viewer restarted at a keyframe)"),
                                ("plis_sent", "Keyframe requests sent to publishers")):
            family = CounterMetricFamily(f"dispatch_relay_{name}", help_text, labels=["kind"])
            for kind, values in counters.items():
                family.add_metric([kind], values[name])
            yield family
        yield _gauge("dispatch_alerts_open", "Alerts not yet acknowledged", self._db_figures["alerts_open"])
        yield _gauge("dispatch_action_units", "Units in the teams of running actions", self._action_units[0])
        yield _gauge("dispatch_action_units_offline", "Units of running actions that are offline now",
                     self._action_units[1])
        requests = GaugeMetricFamily("dispatch_party_requests", "Footage requests by state", labels=["state"])
        for state, n in sorted(self._db_figures["requests"].items()):
            requests.add_metric([state], n)
        yield requests
        yield from self._archive_figures()

    def _archive_figures(self) -> Iterator[Any]:
        archive = self._archive
        if archive is None:
            return
        status = archive.status()
        recording = status["recording"]
        yield _gauge("dispatch_recordings_open", "Recordings open on this node", len(recording))
        yield _gauge("dispatch_recorder_dropped_frames", "Frames the open recordings could not record",
                     sum(r["dropped"] for r in recording.values()))
        yield _gauge("dispatch_recorder_queue_frames", "Frames waiting for the recorders' writer threads",
                     sum(r["queue"] for r in recording.values()))
        yield _counter("dispatch_archive_segments_sealed", "Segments sealed into the archive", self.segments_sealed)
        yield _counter("dispatch_archive_bytes_sealed", "Bytes sealed into the archive", self.bytes_sealed)
        yield _counter("dispatch_archive_stills", "Stills sealed into the archive", self.stills)
        gaps = CounterMetricFamily("dispatch_recording_gaps", "Gaps in recordings, by cause", labels=["cause"])
        for cause, n in sorted(self.gaps.items()):
            gaps.add_metric([cause], n)
        yield gaps
        yield _gauge("dispatch_ledger_entries", "Entries in the evidence ledger", status["ledger_size"])
        sth = archive.ledger.latest_sth()
        if sth is not None:
            yield _gauge("dispatch_ledger_seconds_since_signed_head", "Age of the newest signed tree head",
                         max(0.0, time.time() - parse_iso(str(sth["timestamp"]))))
        free = status["free_bytes"]
        if free is not None:
            yield _gauge("dispatch_archive_free_bytes", "Free bytes on the archive's volume", free)
            rate = self._write_rate()
            yield _gauge("dispatch_archive_days_left", "Days until the archive's volume is full at the last "
                         "hour's write rate (+Inf while nothing is written)",
                         free / rate / 86400 if rate > 0 else float("inf"))
        yield _gauge("dispatch_archive_disk_full", "1 while recording is paused for lack of space",
                     1 if status["disk_full"] else 0)

    def _write_rate(self) -> float:
        """Bytes per second sealed over the last hour."""
        now = time.monotonic()
        while self._writes and now - self._writes[0][0] > RATE_WINDOW_S:
            self._writes.popleft()
        if not self._writes:
            return 0.0
        span = max(60.0, now - self._writes[0][0])
        return sum(size for _, size in self._writes) / span


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_text, value=value)

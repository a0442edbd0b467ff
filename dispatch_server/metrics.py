"""Prometheus instruments of one node: what the services count and time as things happen.

One registry per app (no module-level singletons), exposed at ``/metrics`` (docs/observability.md).
Labels are few and bounded — kind, type, state, cause, outcome, codec — never a unit id, a case
number or a person, so the number of series does not grow with the number of units. Figures that
are state rather than events (publishers, viewers, open recordings, disk free...) are read when
Prometheus scrapes (:mod:`dispatch_server.node_figures`).
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LOOP_LAG_INTERVAL_S = 0.5


class Metrics:
    def __init__(self, node: str) -> None:
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)  # CPU, RSS, open files
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        Info("dispatch_node", "This node", registry=r).info({"node": node})

        # dispatch
        self.instructions = Counter("dispatch_instructions_total",
                                    "Instructions reaching a state, by type and state", ["type", "state"], registry=r)
        self.delivery_seconds = Histogram("dispatch_instruction_delivery_seconds",
                                          "Queued to delivered (the unit has it)", buckets=LATENCY_BUCKETS, registry=r)
        self.ack_seconds = Histogram("dispatch_instruction_ack_seconds",
                                     "Delivered to acknowledged by a person", buckets=LATENCY_BUCKETS, registry=r)
        self.alerts = Counter("dispatch_alerts_total", "Alerts raised, by kind", ["kind"], registry=r)
        self.alert_ack_seconds = Histogram("dispatch_alert_ack_seconds", "Raised to acknowledged, by kind", ["kind"],
                                           buckets=LATENCY_BUCKETS, registry=r)

        # geo
        self.fixes = Counter("dispatch_fixes_total", "GPS fixes received, by outcome (accepted, duplicate, rejected)",
                             ["outcome"], registry=r)
        self.fix_to_console_seconds = Histogram("dispatch_fix_to_console_seconds",
                                                "A fix's arrival to its push to consoles", buckets=FAST_BUCKETS,
                                                registry=r)

        # live
        self.first_frame_seconds = Histogram("dispatch_viewer_first_frame_seconds",
                                             "A viewer's subscription to its first frame", buckets=LATENCY_BUCKETS,
                                             registry=r)
        self.packet_loss_ratio = Histogram("dispatch_publisher_packet_loss_ratio",
                                           "Share of a publisher's packets lost between two scrapes",
                                           buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0), registry=r)
        self.revocations = Counter("dispatch_revocations_total",
                                   "Open connections closed because their credential no longer held", registry=r)

        # party
        self.party_downloads = Counter("dispatch_party_downloads_total",
                                       "Export packages and videos fetched by parties", ["what"], registry=r)
        self.exports = Counter("dispatch_exports_total", "Exports finished, by outcome", ["outcome"], registry=r)
        self.export_seconds = Histogram("dispatch_export_seconds", "Duration of an export", buckets=LATENCY_BUCKETS,
                                        registry=r)

        # process
        self.loop_lag = Histogram("dispatch_event_loop_lag_seconds",
                                  "How late the event loop ran a timer due every 0.5 s", buckets=FAST_BUCKETS,
                                  registry=r)
        self.up_since = Gauge("dispatch_start_time_seconds", "When this node started (epoch)", registry=r)
        self.up_since.set(time.time())
        self._lag_task: asyncio.Task[None] | None = None

    async def _watch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LOOP_LAG_INTERVAL_S
            await asyncio.sleep(LOOP_LAG_INTERVAL_S)
            self.loop_lag.observe(max(0.0, loop.time() - due))

    def start(self) -> None:
        self._lag_task = asyncio.get_running_loop().create_task(self._watch_loop(), name="loop-lag")

    async def close(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            await asyncio.gather(self._lag_task, return_exceptions=True)
            self._lag_task = None

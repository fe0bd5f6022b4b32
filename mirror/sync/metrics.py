"""Prometheus metrics of a long-running sync (`mirror sync --every … --metrics-addr …`).

The exposition is `prometheus_client`'s; this module only says what is counted. Every metric
lives in the service's own `CollectorRegistry` (no process-global state), so a library user
can run two services in one process.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from mirror.sync.report import Status, SyncReport

__all__ = ["SyncMetrics"]

#: run durations worth telling apart: a no-op re-run takes seconds, a first mirror hours
_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, float("inf"))


class SyncMetrics:
    """What the service counts: images by job and status, bytes, runs, requests, budgets."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.images = Counter(
            "mirror_sync_images", "Images handled by sync runs", ["job", "status"], registry=r
        )
        self.bytes_copied = Counter(
            "mirror_sync_copied_bytes", "Bytes of blobs sent by sync runs", ["job"], registry=r
        )
        self.bytes_mounted = Counter(
            "mirror_sync_mounted_bytes",
            "Bytes of blobs mounted from another repository instead of sent",
            ["job"],
            registry=r,
        )
        self.runs = Counter(
            "mirror_sync_runs", "Sync runs, by result (ok, partial, failed)", ["result"], registry=r
        )
        self.duration = Histogram(
            "mirror_sync_run_duration_seconds",
            "How long each sync run took",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.last_success = Gauge(
            "mirror_sync_last_success_timestamp_seconds",
            "When a run last finished with no image of the job failed, deferred or refused",
            ["job"],
            registry=r,
        )
        self.last_run_end = Gauge(
            "mirror_sync_last_run_end_timestamp_seconds",
            "When the last run finished, whatever its result",
            registry=r,
        )
        self.config_errors = Counter(
            "mirror_sync_config_errors",
            "Configuration files found invalid on re-reading (the last good one was kept)",
            registry=r,
        )
        self.requests = Counter(
            "mirror_registry_requests",
            "Requests answered by each registry, by HTTP status code",
            ["registry", "code"],
            registry=r,
        )
        self.budget = Gauge(
            "mirror_registry_rate_limit_remaining",
            "Requests left in the rate-limit window each registry last announced",
            ["registry"],
            registry=r,
        )

    def observe_response(self, registry: str, method: str, status: int) -> None:
        """Count one answer of a registry (the transport's `on_response`)."""
        self.requests.labels(registry=registry, code=str(status)).inc()

    def record_run(
        self, report: SyncReport, jobs: Iterable[str], seconds: float, *, failed: bool = False
    ) -> None:
        """Fold one finished run into the metrics; `failed`: the run as a whole stopped early."""
        troubled: set[str] = set()
        for image in report.images:
            self.images.labels(job=image.job, status=str(image.status)).inc()
            if image.status is Status.COPIED:
                self.bytes_copied.labels(job=image.job).inc(image.bytes)
                self.bytes_mounted.labels(job=image.job).inc(image.mounted)
            if image.status in (Status.FAILED, Status.DEFERRED, Status.STOPPED, Status.REFUSED):
                troubled.add(image.job)
        for host, budget in report.rate_limits.items():
            if "remaining" in budget:
                self.budget.labels(registry=host).set(budget["remaining"])
        now = time.time()
        if not failed:
            for job in jobs:
                if job not in troubled:
                    self.last_success.labels(job=job).set(now)
        self.duration.observe(seconds)
        self.last_run_end.set(now)
        self.runs.labels(result="failed" if failed else "partial" if troubled else "ok").inc()

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)

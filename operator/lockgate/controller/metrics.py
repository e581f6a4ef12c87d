"""Prometheus metrics of the operator.

The alerts in charts/lockgate/files/alerts.yaml read them; times are Unix timestamps, so an
alert says "for more than ten minutes" with `time() - ...` and a restart of the operator or of
Prometheus does not start the clock again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from ..shared.timestamps import parse_time
from .conditions import ConditionType, find
from .decide import Decision
from .observed import PodView

JOBS = Counter(
    "lockgate_jobs_total", "Migration Jobs by phase and result (Created, Succeeded, Failed)", ["phase", "result"]
)
JOB_SECONDS = Histogram(
    "lockgate_job_duration_seconds",
    "Run time of finished migration Jobs",
    ["phase"],
    buckets=(1, 5, 15, 30, 60, 300, 900, 3600, 14400),
)
GATE_WAIT_SECONDS = Histogram(
    "lockgate_gate_wait_seconds",
    "How long pods waited at the schema gate before it opened",
    buckets=(0.5, 1, 5, 15, 30, 60, 300, 900, 3600),
)
RECONCILE_SECONDS = Histogram("lockgate_reconcile_seconds", "Time to observe, decide and act for one SchemaMigration")
BACKGROUND_ROWS = Gauge(
    "lockgate_background_rows", "Rows a running batched background script has done", ["namespace", "name"]
)
BACKGROUND_PERCENT = Gauge(
    "lockgate_background_percent", "How far a running batched background script got, in percent", ["namespace", "name"]
)
STATUS_CONFLICTS = Counter("lockgate_status_conflicts_total", "Status writes refused because another writer came first")
RECONCILE_ERRORS = Counter(
    "lockgate_reconcile_errors_total",
    "Reconcile passes that failed, by the step that failed and whether it was an outage (transient)",
    ["step", "transient"],
)


def observe(decision: Decision) -> None:
    """Count what a decision did, once it has been carried out."""
    if decision.create:
        JOBS.labels(decision.create.phase, "Created").inc()
    for entry in decision.finished:
        JOBS.labels(entry.phase, str(entry.result)).inc()
        seconds = _seconds(entry.start_time, entry.completion_time)
        if seconds is not None:
            JOB_SECONDS.labels(entry.phase).observe(seconds)
    for gate in decision.gates:
        if gate.ready and gate.waited_seconds is not None:
            GATE_WAIT_SECONDS.observe(gate.waited_seconds)


def show_progress(namespace: str, name: str, progress: dict[str, Any] | None) -> None:
    """The gauges follow status.progress; a SchemaMigration without one has no series."""
    for gauge, key in ((BACKGROUND_ROWS, "rows"), (BACKGROUND_PERCENT, "percent")):
        value = (progress or {}).get(key)
        if value is None:
            try:
                gauge.remove(namespace, name)
            except KeyError:
                pass  # never had one
        else:
            gauge.labels(namespace, name).set(value)


def _seconds(started: datetime | None, ended: datetime | None) -> float | None:
    return max(0.0, (ended - started).total_seconds()) if started and ended else None


@dataclass(frozen=True)
class MigrationGauges:
    """One SchemaMigration's gauges, as of its last reconcile."""

    phase: str | None  # None: no such SchemaMigration (its pods may still wait at the gate)
    stalled: tuple[str, float] | None  # the Stalled condition's reason, and since when
    pods_waiting: int
    waiting_since: float | None  # creation of the oldest pod the gate holds
    rows: int | None  # the background walk's rows, while it runs (not paused, not done)
    moved: float | None  # when those rows were first seen: the walk's last step forward


def gauges_of(
    status: Mapping[str, Any] | None, held: Iterable[PodView], previous: MigrationGauges | None, now: float
) -> MigrationGauges:
    """The gauges for a status and the pods the gate holds (pure: `now` is the operator's clock)."""
    status = status or {}
    stalled = find(status.get("conditions") or [], ConditionType.STALLED)
    since = parse_time(stalled.get("lastTransitionTime")) if stalled and stalled.get("status") == "True" else None
    created = [t.timestamp() for t in (parse_time(p.created) for p in held) if t is not None]
    progress = status.get("progress") or {}
    rows = progress.get("rows") if progress.get("state") not in (None, "paused", "done") else None
    moved = previous.moved if previous and rows is not None and previous.rows == rows else now
    return MigrationGauges(
        phase=status.get("phase"),
        stalled=(str(stalled.get("reason")), since.timestamp()) if stalled and since else None,
        pods_waiting=len(created),
        waiting_since=min(created, default=None),
        rows=rows,
        moved=moved if rows is not None else None,
    )


class MigrationCollector:
    """Exports every SchemaMigration's gauges; one that is gone (and holds no pods) has no series."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # collect() runs in the metrics server's thread
        self._gauges: dict[tuple[str, str], MigrationGauges] = {}

    def update(self, namespace: str, name: str, status: Mapping[str, Any] | None, held: Iterable[PodView]) -> None:
        key = (namespace, name)
        with self._lock:
            gauges = gauges_of(status, held, self._gauges.get(key), time.time())
            if status is None and not gauges.pods_waiting:
                self._gauges.pop(key, None)
            else:
                self._gauges[key] = gauges

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            items = sorted(self._gauges.items())
        labels = ["namespace", "name"]
        phase = GaugeMetricFamily(
            "lockgate_migration_phase", "1 for the SchemaMigration's status.phase", labels=[*labels, "phase"]
        )
        stalled = GaugeMetricFamily(
            "lockgate_migration_stalled_since_timestamp_seconds",
            "When the SchemaMigration's Stalled condition became True; no series while it is not",
            labels=[*labels, "reason"],
        )
        waiting = GaugeMetricFamily("lockgate_gate_pods_waiting", "Pods the schema gate holds now", labels=labels)
        waiting_since = GaugeMetricFamily(
            "lockgate_gate_waiting_since_timestamp_seconds",
            "Creation time of the oldest pod the schema gate holds; no series while it holds none",
            labels=labels,
        )
        moved = GaugeMetricFamily(
            "lockgate_background_last_progress_timestamp_seconds",
            "When the running background walk last reported new rows (as the operator saw it); no series while none runs",
            labels=labels,
        )
        for (namespace, name), g in items:
            if g.phase is not None:
                phase.add_metric([namespace, name, g.phase], 1)
            if g.stalled is not None:
                stalled.add_metric([namespace, name, g.stalled[0]], g.stalled[1])
            waiting.add_metric([namespace, name], g.pods_waiting)
            if g.waiting_since is not None:
                waiting_since.add_metric([namespace, name], g.waiting_since)
            if g.moved is not None:
                moved.add_metric([namespace, name], g.moved)
        return [phase, stalled, waiting, waiting_since, moved]


MIGRATIONS = MigrationCollector()
REGISTRY.register(MIGRATIONS)

"""Prometheus metrics of the operator."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from .decide import Decision
from .observed import parse_time

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


def observe(decision: Decision) -> None:
    """Count what a decision did, once it has been carried out."""
    if decision.create:
        JOBS.labels(decision.create.phase, "Created").inc()
    for entry in decision.finished:
        JOBS.labels(entry["phase"], entry["result"]).inc()
        seconds = _seconds(entry.get("startTime"), entry.get("completionTime"))
        if seconds is not None:
            JOB_SECONDS.labels(entry["phase"]).observe(seconds)
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


def _seconds(start: str | None, end: str | None) -> float | None:
    started, ended = parse_time(start), parse_time(end)
    return max(0.0, (ended - started).total_seconds()) if started and ended else None

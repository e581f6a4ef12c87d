"""`lockgate status NAME --targets`: where each tenant stands in each phase of the current version.

Kubernetes already holds it all, so this reads it, never writes: the Jobs status.history names as
the latest of each phase (and wave, with a canary) of spec.version, their completedIndexes and
failedIndexes, and their pods (each pod's completion index, start and end, and the runner's report
in its termination message). A Job deleted since (its TTL) leaves the counts in status.targets only.
A schemaQuery's Job lists no schema the operator knows: a row per index, and one per failed schema
its pod's report names.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from kubernetes import client

from ..controller.kube_client import load_config
from ..controller.observed import JobPodView, JobView, job_pod_view, job_view
from ..controller.spec import OWNER_LABEL, owner_label
from ..controller.targets import cause, chunk_failures, indexes
from ..shared.errors import UsageError
from ..shared.progress import duration_text
from ..shared.targets import per_index
from ..shared.timestamps import parse_time
from ..shared.versions import Version

SUCCEEDED, FAILED, RUNNING, PENDING = "succeeded", "failed", "running", "pending"
POD = "pod"


@dataclass(frozen=True)
class Ran:
    """One target in one phase's Job."""

    state: str
    job: str
    seconds: float | None = None  # the target's run as its pod's report says; else the index's last pod's
    error: str | None = None
    seconds_of: str | None = None  # POD: the pod's, start to end (or to now), over every target of its chunk


@dataclass(frozen=True)
class PhaseJob:
    """One phase's latest Job as Kubernetes holds it, with its pods' start times (not in JobPodView)."""

    phase: str
    name: str
    job: JobView | None  # None: deleted since (its TTL); status.targets keeps its counts
    pods: tuple[JobPodView, ...] = ()
    started: tuple[tuple[str, str], ...] = ()  # (pod, its container's startedAt)
    wave: str = ""  # with a canary: canary or rest, each wave's Job covering its own targets

    def describe(self) -> str:
        return f"{self.phase} {self.wave}" if self.wave else self.phase


def target_rows(phase_jobs: list[PhaseJob], now: datetime) -> dict[str, dict[str, Ran]]:
    """Target -> phase -> how it ran, targets in their first Job's index order (pure)."""
    rows: dict[str, dict[str, Ran]] = {}
    for entry in phase_jobs:
        for name, ran in _phase(entry, entry.job, now) if entry.job else ():
            rows.setdefault(name, {})[entry.phase] = ran
    return rows


def _phase(entry: PhaseJob, job: JobView, now: datetime) -> list[tuple[str, Ran]]:
    done, failed, started = indexes(job.completed_indexes), indexes(job.failed_indexes), dict(entry.started)
    last: dict[int, JobPodView] = {}  # each index's newest pod
    for mine in sorted((p for p in entry.pods if p.job == job.name), key=lambda p: p.created or ""):
        if mine.index is not None:
            last[mine.index] = mine
    found = []
    shards = range(job.first_index, job.first_index + job.index_count)  # a canary's rest Job: from its first on
    chunks = tuple((f"index {i}",) for i in shards) if job.indexes else per_index(job.targets, job.per_pod)
    for index, names in enumerate(chunks):
        pod = last.get(index)
        if index in done or index in failed:
            state = SUCCEEDED if index in done else FAILED
        else:
            state = RUNNING if job.live and pod and pod.finished is None else PENDING
        seconds = _seconds(started.get(pod.name), pod.finished, now) if pod and state != PENDING else None
        ran = Ran(state, job.name, seconds, cause(job, index, entry.pods) if state == FAILED else None)
        if len(names) > 1 and seconds is not None:
            ran = replace(ran, seconds_of=POD)
        if job.indexes:
            found += _listed(ran, names[0], pod)
        else:
            found += [(name, _in_chunk(ran, n, names, pod)) for n, name in enumerate(names)]
    return found


def _listed(ran: Ran, index: str, pod: JobPodView | None) -> list[tuple[str, Ran]]:
    """A schemaQuery's index, and each failed schema its pod's report names with its cause."""
    report = pod.report if pod and ran.state == FAILED else None
    named = [(target, replace(ran, error=error)) for target, error in report.failed_targets] if report else []
    return [(index, replace(ran, error=None) if named else ran), *named]


def _in_chunk(ran: Ran, n: int, names: tuple[str, ...], pod: JobPodView | None) -> Ran:
    """The `n`th target of an index of several: its own duration if its pod's report kept it; of
    a failed index, whether its pod's report names it failed (with its cause), or not reached."""
    durations = pod.report.durations if pod and pod.report else ()
    if ran.state in (SUCCEEDED, FAILED) and n < len(durations):
        ran = replace(ran, seconds=durations[n] / 1000, seconds_of=None)
    found = chunk_failures(names, pod) if ran.state == FAILED and pod else None
    if not found:
        return ran
    count, failures = found
    if names[n] in failures:
        return replace(ran, error=failures[names[n]])
    return replace(ran, state=SUCCEEDED, error=None) if len(failures) == count else ran


def _seconds(start: str | None, end: str | None, now: datetime) -> int | None:
    began = parse_time(start)
    return None if began is None else max(0, int(((parse_time(end) or now) - began).total_seconds()))


def table(phase_jobs: list[PhaseJob], now: datetime) -> list[str]:
    """A row per target, a column per phase, then one line per failure: the runner's cause (pure)."""
    phases, rows = list(dict.fromkeys(p.phase for p in phase_jobs)), target_rows(phase_jobs, now)
    grid = [
        ["TARGET", *map(str.upper, phases)],
        *([name, *(_cell(row.get(p)) for p in phases)] for name, row in rows.items()),
    ]
    widths = [max(len(line[i]) for line in grid) for i in range(len(phases) + 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in grid]
    lines += [
        f"{p.phase}: Job {p.name} is gone (its TTL): status.targets keeps its counts" for p in phase_jobs if not p.job
    ]
    failures = [(name, p, ran.error) for name, row in rows.items() for p, ran in row.items() if ran.error]
    if any(ran.seconds_of == POD for row in rows.values() for ran in row.values()):
        lines.append(f"({POD}): its pod's duration, over all the targets it migrated: its report kept none of its own")
    return lines + [f"{name} ({phase}): {error}" for name, phase, error in failures]


def _cell(ran: Ran | None) -> str:
    if ran is None:
        return "-"
    if ran.seconds is None:
        return ran.state
    took = duration_text(ran.seconds) if ran.seconds >= 1 else f"{round(ran.seconds * 1000)}ms"
    return f"{ran.state} {took}" + (f" ({POD})" if ran.seconds_of == POD else "")


def document(phase_jobs: list[PhaseJob], now: datetime) -> dict[str, Any]:
    """`--json`: each target's phases, each with its state, Job, seconds and cause (pure)."""
    rows = target_rows(phase_jobs, now)
    return {
        "jobs": [{"phase": p.phase, "wave": p.wave, "job": p.name, "gone": p.job is None} for p in phase_jobs],
        "targets": [
            {
                "target": name,
                "phases": {p: {k: v for k, v in asdict(ran).items() if v is not None} for p, ran in row.items()},
            }
            for name, row in rows.items()
        ],
    }


def read_phase_jobs(body: dict[str, Any]) -> list[PhaseJob]:
    """The latest Job of each phase and wave of spec.version, as status.history names them, and their pods."""
    meta, status = body["metadata"], body.get("status") or {}
    if not status.get("targets"):
        raise UsageError(f"SchemaMigration {meta['namespace']}/{meta['name']} has no status.targets: no spec.targets, "
                         "or the operator has not run a Job for them yet")  # fmt: skip
    wanted = latest_jobs(status.get("history") or [], (body.get("spec") or {}).get("version"))
    load_config()
    selector = f"{OWNER_LABEL}={owner_label(meta['name'])}"
    namespace = meta["namespace"]
    # Raw JSON: a thousand targets' pods deserialized into the client's models would take seconds.
    jobs = _items(client.BatchV1Api().list_namespaced_job(namespace, label_selector=selector, _preload_content=False))
    pods = _items(client.CoreV1Api().list_namespaced_pod(namespace, label_selector=selector, _preload_content=False))
    by_name = {j["metadata"]["name"]: j for j in jobs}
    found = []
    for (phase, wave), name in wanted.items():
        raw = [p for p in pods if (p["metadata"].get("labels") or {}).get("job-name") == name]
        views = tuple(job_pod_view(p) for p in raw)
        started = tuple((p["metadata"]["name"], s) for p in raw if (s := _container_start(p)))
        job = job_view(by_name[name]) if name in by_name else None
        found.append(PhaseJob(phase, name, job, views, started, wave))
    return found


def latest_jobs(history: list[dict[str, Any]], version: object) -> dict[tuple[str, str], str]:
    """(phase, wave) -> the Job of its latest entry for `version`, in the order they first ran (pure)."""
    wanted = Version.parse_or_none(str(version))
    latest: dict[tuple[str, str], str] = {}
    for entry in history:
        if entry.get("job") and Version.parse_or_none(str(entry.get("version"))) == wanted:
            latest[str(entry.get("phase")), str(entry.get("wave") or "")] = str(entry["job"])
    return latest


def _items(response: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(response.data)["items"]
    return items


def _container_start(pod: dict[str, Any]) -> str | None:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        state = container.get("state") or {}
        started = (state.get("running") or state.get("terminated") or {}).get("startedAt")
        if started:
            return str(started)
    return None

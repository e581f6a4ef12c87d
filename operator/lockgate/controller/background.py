"""The background phase while it runs: its progress, and pausing it (pure).

Progress comes from the runner's own log (shared/progress.py): the shell reads the end of the
log of each running background pod that `progress_pods` names. Pausing suspends the Job: the
Job controller deletes its pod, the runner finishes the batch in flight on SIGTERM and exits,
and unsuspending starts a pod that resumes after the last committed batch.
"""

from __future__ import annotations

from typing import Any

from ..shared.phases import Phase
from ..shared.progress import Progress, summed
from ..shared.targets import per_index
from .ledger import JobRef
from .observed import JobView, Observed
from .spec import Migration
from .targets import indexes

# How often the status shows new progress while a background Job runs (logs are not watched).
PROGRESS_REFRESH = 10.0


def _running(jobs: tuple[JobView, ...]) -> list[JobView]:
    return [j for j in jobs if j.phase == Phase.BACKGROUND and j.live]


def progress_pods(observed: Observed) -> tuple[str, ...]:
    """The pods whose log tail says how far the background phase got: started, not finished."""
    jobs = {j.name for j in _running(observed.jobs) if not j.suspended}
    return tuple(p.name for p in observed.job_pods if p.job in jobs and p.started and p.finished is None)


def progress_status(observed: Observed) -> dict[str, Any] | None:
    """status.progress: the newest progress a running background pod reported; for a fan-out Job,
    the walks of the targets in flight summed, and how many targets are done."""
    reports = [(pod, observed.progress[pod.name]) for pod in observed.job_pods if pod.name in observed.progress]
    if not reports:
        return None
    pod, progress = reports[-1]
    job = next((j for j in observed.jobs if j.name == pod.job), None)
    if job is None or not job.fan_out:
        return _progress(pod.job, progress, progress.summary())
    walks = [p for mine, p in reports if mine.job == job.name]
    if job.indexes:  # a schemaQuery's schemas are its pods' to know: its indexes are counted instead
        done, of, unit = len(indexes(job.completed_indexes)), job.index_count, " indexes"
    else:
        covered = per_index(job.targets, job.per_pod)  # a completed index: every target it covers
        done, of, unit = (
            sum(len(covered[i]) for i in indexes(job.completed_indexes) if i < len(covered)),
            len(job.targets),
            "",
        )
    fan_out = {"walking": len(walks), "done": done, "total": of} | ({"unit": "indexes"} if unit else {})
    total = summed(walks)
    summary = f"{total.summary()}, {len(walks)} walking, {done}/{of}{unit} done"
    return _progress(job.name, total, summary) | {"targets": fan_out}


def _progress(job: str, progress: Progress, summary: str) -> dict[str, Any]:
    return {
        "job": job,
        "script": progress.script,
        "state": progress.state,
        "rows": progress.rows,
        "batches": progress.batches,
        "percent": progress.percent,
        "rowsPerSecond": progress.rate,
        "etaSeconds": progress.eta_seconds,
        "summary": summary,
    }


def to_suspend(migration: Migration, jobs: tuple[JobView, ...]) -> tuple[JobRef, ...]:
    """The running background Jobs to suspend, while lockgate.dev/paused says so."""
    if not migration.paused:
        return ()
    return tuple(JobRef(j.name, j.uid) for j in _running(jobs) if not j.suspended)


def may_start(migration: Migration, job: JobRef, jobs: tuple[JobView, ...]) -> bool:
    """A bound background Job stays suspended while paused; every other bound Job starts."""
    view = next((j for j in jobs if j.name == job.name and j.uid == job.uid), None)
    return not (migration.paused and view is not None and view.phase == Phase.BACKGROUND)

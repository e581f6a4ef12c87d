"""The ledger: status.history, the versions each phase reached, and the exactly-once claim (pure).

Exactly once rests on three rules the shell enforces:
- a Job is created only after a status write that claims it (a `Running` history entry),
  guarded by resourceVersion, so two replicas cannot both claim it (next_job decides the
  claim, decide() records it, the reconciler writes it before it creates the Job);
- a Job is created suspended and runs only once its uid is bound to the claim (`jobUid`, again
  written with the status first); any other Job of that name is a create that landed late
  (a slow API server, say, after another replica's Job already ran) and is deleted unrun
  (Ledger.bind);
- a Job keeps the `lockgate.dev/result` finalizer until its result is in status.history,
  so TTL deletion cannot erase a result before it is recorded (Ledger.is_recorded).
"""

from __future__ import annotations

import copy
import enum
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..shared.phases import UNDO, Phase, lane
from ..shared.report import RunnerReport
from ..shared.versions import Version
from .observed import ACTIVE, FAILED, SUCCEEDED, JobPodView, JobView, Observed, iso, parse_time, parse_version
from .spec import Migration

HISTORY_LIMIT = 20
# A claim younger than this is left alone while the Job shows up in the watch; an older one
# whose Job never appeared means the operator stopped between claim and create.
CLAIM_GRACE = timedelta(seconds=10)
# A bound claim's Job is in every replica's watch long before this; after it, a Job that is
# gone without a result was deleted around lockgate's finalizer.
LOST_GRACE = timedelta(seconds=60)
# Pods and Jobs arrive on separate watches: a Job may finish before its pod's termination
# message is seen. Its result waits this long for the runner's summary, then goes without.
REPORT_GRACE = timedelta(seconds=5)
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
VERSION_IN_NAME = 20  # characters of a version's numbers a Job name keeps when it must be cut

Entry = dict[str, Any]  # one status.history entry, as the API stores it


class Result(enum.StrEnum):
    RUNNING = "Running"  # claimed: the Job is (about to be) running
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


FINAL = (Result.SUCCEEDED, Result.FAILED)
RESULT_OF_STATE = {SUCCEEDED: Result.SUCCEEDED, FAILED: Result.FAILED}


@dataclass(frozen=True)
class JobRequest:
    """A claimed Job: what to create once the claim is written."""

    phase: str
    version: str  # what the Job is for (its label)
    target: str  # --target for migrate, --to for undo
    attempt: str
    name: str
    image: str


@dataclass(frozen=True)
class JobRef:
    """One Job object: its name and the uid that tells a late create from the Job that ran."""

    name: str
    uid: str


@dataclass(frozen=True)
class Binding:
    """What to do with suspended Jobs: start the bound ones, delete every other one unrun."""

    start: tuple[JobRef, ...] = ()
    delete: tuple[JobRef, ...] = ()


@dataclass(frozen=True)
class Step:
    """What to do about the one Job of a (phase, version): claim it, wait, or report its failure."""

    request: JobRequest | None = None
    failed: Entry | None = None
    waiting: str = ""  # what the status says while the Job is claimed or running
    requeue_after: float | None = None
    running: JobView | None = None  # the Job of this lane that runs now, if one does


@dataclass
class Ledger:
    history: list[Entry]
    expanded: Version | None
    background: Version | None
    contracted: Version | None

    @classmethod
    def from_status(cls, status: dict[str, Any]) -> Ledger:
        return cls(
            copy.deepcopy(status.get("history") or []),
            parse_version(status.get("appliedVersion")),
            parse_version(status.get("backgroundVersion")),
            parse_version(status.get("contractedVersion")),
        )

    def reached(self, phase: Phase, version: Version) -> bool:
        """Whether `phase` has succeeded for `version` (or a newer one)."""
        done = {Phase.EXPAND: self.expanded, Phase.BACKGROUND: self.background, Phase.CONTRACT: self.contracted}[phase]
        return done is not None and done >= version

    def latest(self, phase: str, version: Version) -> Entry | None:
        return next(
            (e for e in reversed(self.history) if e["phase"] == phase and parse_version(e["version"]) == version), None
        )

    def by_job(self, name: str) -> Entry | None:
        return next((e for e in self.history if e["job"] == name), None)

    def is_recorded(self, job: str) -> bool:
        entry = self.by_job(job)
        return entry is not None and entry["result"] in FINAL

    def image_of(self, version: Version) -> str | None:
        """The image that expanded `version`: it carries that version's undo scripts."""
        return next(
            (
                e["image"]
                for e in reversed(self.history)
                if e["phase"] == Phase.EXPAND
                and e["result"] == Result.SUCCEEDED
                and parse_version(e["version"]) == version
            ),
            None,
        )

    def claim(self, request: JobRequest, now: str) -> None:
        """Record the claim; written with the status, so it is always guarded by resourceVersion."""
        entry = self.by_job(request.name)
        if entry is None:
            entry = {
                "version": request.version,
                "phase": request.phase,
                "job": request.name,
                "attempt": request.attempt,
                "image": request.image,
                "result": Result.RUNNING.value,
            }
            self.history.append(entry)
        entry["claimedAt"] = now

    def late(self, job: JobView) -> bool:
        """Whether the Job is a create that landed after its claim was settled: its claim is bound
        to another uid, or finished without it, or gone (a suspended Job no claim names)."""
        entry = self.by_job(job.name)
        if entry is None:
            return job.suspended
        bound = entry.get("jobUid")
        return bound not in (None, job.uid) or (bound is None and entry["result"] in FINAL and job.suspended)

    def bind(self, jobs: tuple[JobView, ...], now: str) -> Binding:
        """Bind each suspended Job to its running claim (once) and start it; delete late creates unrun."""
        start, delete = [], []
        for job in jobs:
            if not job.suspended or job.deleting:
                continue
            entry = self.by_job(job.name)
            if self.late(job):
                delete.append(JobRef(job.name, job.uid))
            elif entry is not None and entry["result"] == Result.RUNNING:
                if entry.get("jobUid") is None:
                    entry.update(jobUid=job.uid, boundAt=now)
                start.append(JobRef(job.name, job.uid))
        return Binding(tuple(start), tuple(delete))

    def record_finished(self, observed: Observed) -> tuple[list[Entry], float | None]:
        """Write each finished Job's result into its history entry (once) and advance the versions.
        Also returns when to look again for a result still waiting for its pod's report."""
        done: list[Entry] = []
        retry = None
        for job in sorted(observed.jobs, key=lambda j: j.start or ""):
            entry = self.by_job(job.name)
            version = parse_version(job.version)
            if version is None or self.late(job) or (entry and entry["result"] in FINAL):
                continue
            if job.live:
                continue
            report = _report(observed.job_pods, job.name)
            waited = observed.now - (parse_time(job.finished) or observed.now)
            if report is None and job.state != ACTIVE and waited < REPORT_GRACE:
                retry = 1.0
                continue
            entry = self._finish(job, entry, report, observed.now)
            if entry["result"] == Result.SUCCEEDED:
                self._advance(job.phase, version)
            done.append(entry)
        return done, retry

    def record_lost(self, observed: Observed) -> list[Entry]:
        """Bound claims whose Job is gone without a result (its finalizer was removed by hand):
        failed, since whether it ran is unknown; never claimed again under the same name."""
        present = {j.name for j in observed.jobs}
        lost = [
            e
            for e in self.history
            if e["result"] == Result.RUNNING
            and e["job"] not in present
            and observed.now - (parse_time(e.get("boundAt")) or observed.now) > LOST_GRACE
        ]
        for entry in lost:
            entry.pop("claimedAt", None)
            entry.pop("boundAt", None)
            entry.update(
                result=Result.FAILED.value,
                completionTime=iso(observed.now),
                error=f"the Job {entry['job']} was deleted before its result was recorded: check whether it ran",
            )
        return lost

    def _finish(self, job: JobView, entry: Entry | None, report: RunnerReport | None, now: datetime) -> Entry:
        if entry is None:  # a Job we did not claim (history trimmed, or status lost): adopt its result
            entry = {
                "version": job.version,
                "phase": job.phase,
                "job": job.name,
                "attempt": job.attempt,
                "image": job.image,
            }
            self.history.append(entry)
        deleted_early = job.state == ACTIVE
        entry.pop("claimedAt", None)
        entry.pop("boundAt", None)
        entry.update(
            result=(Result.FAILED if deleted_early else RESULT_OF_STATE[job.state]).value,
            startTime=job.start,
            completionTime=job.finished or iso(now),
            applied=report.applied if report else None,
            schemaVersion=report.schema_version if report else None,
            error="the Job was deleted before it finished" if deleted_early else _error(job, report),
        )
        return entry

    def _advance(self, phase: str, version: Version) -> None:
        if phase == Phase.EXPAND:
            self.expanded = _newer(self.expanded, version)
        elif phase == Phase.BACKGROUND:
            self.background = _newer(self.background, version)
        elif phase == Phase.CONTRACT:
            self.contracted = _newer(self.contracted, version)
        elif phase == UNDO:
            self.expanded = version
            self.background = min(self.background, version) if self.background else None

    def bounded_history(self) -> list[Entry]:
        """The newest entries; claims still running are never dropped."""
        keep = self.history[-HISTORY_LIMIT:]
        running = [e for e in self.history[:-HISTORY_LIMIT] if e["result"] == Result.RUNNING]
        return running + keep


def next_job(
    ledger: Ledger, observed: Observed, migration: Migration, phase: str, version: Version, image: str
) -> Step:
    """Wait for, retry or claim the one Job of (phase, version): the exactly-once rule.

    One Job at a time per lane; a failed attempt is final until the attempt key changes;
    a fresh claim is left to its Job; a stale one is claimed again under the same name."""
    busy = [j for j in observed.jobs if lane(j.phase) == lane(phase) and j.live]
    if busy:
        return Step(
            waiting=f"{busy[0].phase} Job {busy[0].name} (version {busy[0].version}) is running", running=busy[0]
        )
    attempt = attempt_key(migration)
    latest = ledger.latest(phase, version)
    if latest and latest["result"] == Result.FAILED and latest.get("attempt") == attempt:
        return Step(failed=latest)
    name = job_name(migration, phase, version, attempt)
    if latest and latest["result"] == Result.RUNNING and latest.get("jobUid"):
        # Its Job was created and bound, so it is never created again: wait for the watch, or for
        # record_finished to call it lost.
        bound = observed.now - (parse_time(latest.get("boundAt")) or observed.now)
        recheck = max(1.0, (LOST_GRACE - bound).total_seconds())  # never a busy loop once the grace is over
        return Step(waiting=f"waiting for {phase} Job {latest['job']}", requeue_after=recheck)
    if latest and latest["result"] == Result.RUNNING:
        age = observed.now - (parse_time(latest.get("claimedAt")) or observed.now)
        if age < CLAIM_GRACE:
            return Step(
                waiting=f"starting {phase} Job {latest['job']}", requeue_after=(CLAIM_GRACE - age).total_seconds()
            )
        attempt, name = latest.get("attempt", attempt), latest["job"]
    request = JobRequest(phase, str(version), str(version), attempt, name, image)
    return Step(request=request, waiting=f"starting {phase} Job {name}")


def attempt_key(migration: Migration) -> str:
    """Changes when the spec changes or the retry annotation does: the only ways to retry a failed Job."""
    return hashlib.sha256(f"{migration.generation}/{migration.retry_token}".encode()).hexdigest()[:6]


def job_name(migration: Migration, phase: str, version: Version, attempt: str) -> str:
    """Deterministic per (SchemaMigration instance, phase, version, attempt): a DNS-1123 label of at
    most 63 characters, since the Job controller copies it into its pods' job-name label."""
    digest = hashlib.sha256(f"{migration.uid}/{phase}/{version}/{attempt}".encode()).hexdigest()[:5]
    numbers = re.sub(r"[^0-9]+", "-", str(version))
    name = _joined(migration.name, phase, numbers, digest)
    if _DNS_LABEL.fullmatch(name):
        return name  # what earlier versions named it too: claims in status keep their Jobs
    # A long version, or a name with dots: cut the version's numbers and drop the dots; the digest
    # (over the whole version) keeps the name unique.
    return _joined(migration.name.replace(".", "-"), phase, numbers[:VERSION_IN_NAME].rstrip("-"), digest)


def _joined(name: str, phase: str, version: str, digest: str) -> str:
    suffix = f"-{phase}-{version}-{digest}"
    return name[: 63 - len(suffix)].rstrip("-.") + suffix


def _newer(current: Version | None, version: Version) -> Version:
    return version if current is None else max(current, version)


def _report(job_pods: tuple[JobPodView, ...], job: str) -> RunnerReport | None:
    pods = sorted((p for p in job_pods if p.job == job and p.report), key=lambda p: p.finished or "")
    return pods[-1].report if pods else None


def _error(job: JobView, report: RunnerReport | None) -> str | None:
    """Why a finished Job failed: the deadline first (the runner's last words then are only where
    it was stopped), then the runner's own error, then what Kubernetes says."""
    said = report.error if report else None
    if job.state != FAILED:
        return said
    if job.failed_reason == "DeadlineExceeded":
        where = f" (its last output: {said})" if said else ""
        return f"the Job ran longer than activeDeadlineSeconds ({job.deadline} s) and was stopped{where}: raise spec.activeDeadlineSeconds or make the migration faster"
    if said:
        return said
    if report:
        return f"the container exited with code {report.exit_code}"
    if job.failed_reason == "BackoffLimitExceeded":
        return f"the pod failed {job.failed_pods} time(s) without a result: see kubectl logs job/{job.name} and the Job's Events"
    why = f" ({job.failed_reason}: {job.failed_message})" if job.failed_reason else ""
    return f"the Job failed{why} and no pod result was found: see its Events"

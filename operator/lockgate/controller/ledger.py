"""The ledger: status.history, the versions each phase reached, and the exactly-once claim (pure).

Exactly once rests on three rules the shell enforces:
- a Job is created only after a status write that claims it (a `Running` history entry),
  guarded by resourceVersion, so two replicas cannot both claim it (next_job decides the
  claim, decide() records it, the reconciler writes it before it creates the Job);
- a Job is created suspended and runs only once its uid is bound to the claim (`jobUid`, again
  written with the status first); any other Job of that name is a create that landed late
  (a slow API server, say, after another replica's Job already ran) and is deleted unrun
  (Ledger.bind);
- the claim's key is (phase, version, wave): with a canary, each phase runs a Job per wave
  (targets.waves), and only the last wave's success advances the versions (the gate);
- a Job keeps the `lockgate.dev/result` finalizer until its result is in status.history,
  so TTL deletion cannot erase a result before it is recorded (Ledger.is_recorded).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from ..shared.phases import UNDO, Phase, lane
from ..shared.report import RunnerReport
from ..shared.timestamps import parse_time
from ..shared.versions import Version
from .history_entry import FINAL, HistoryEntry, Result
from .observed import JobPodView, JobView, Observed
from .schema_query import unreported_indexes
from .spec import Migration
from .targets import CANARY, WHOLE, Tally, applied_total, digest, indexes, tally, wave_targets

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


@dataclass(frozen=True)
class JobRequest:
    """A claimed Job: what to create once the claim is written."""

    phase: str
    version: Version  # what the Job is for: --target for migrate, --to for undo
    attempt: str
    name: str
    image: str
    wave: str = WHOLE  # with a canary: CANARY or REST (targets.waves)


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
class JobVerdict:
    """Where the one Job of a (phase, version) stands: claim it, wait for it, or report its failure."""

    request: JobRequest | None = None
    failed: HistoryEntry | None = None
    waiting: str = ""  # what the status says while the Job is claimed or running
    requeue_after: float | None = None
    running: JobView | None = None  # the Job of this lane that runs now, if one does
    awaiting_approval: bool = False  # the next Job waits for a person's annotation (waves.py)


@dataclass
class Ledger:
    history: list[HistoryEntry]
    expanded: Version | None
    background: Version | None
    contracted: Version | None

    @classmethod
    def from_status(cls, status: dict[str, Any]) -> Ledger:
        """The ledger as status stores it; status.status_of writes it back (HistoryEntry.to_api)."""
        return cls(
            [HistoryEntry.from_api(e) for e in status.get("history") or []],
            Version.parse_or_none(status.get("appliedVersion")),
            Version.parse_or_none(status.get("backgroundVersion")),
            Version.parse_or_none(status.get("contractedVersion")),
        )

    def reached(self, phase: Phase, version: Version) -> bool:
        """Whether `phase` has succeeded for `version` (or a newer one)."""
        done = {Phase.EXPAND: self.expanded, Phase.BACKGROUND: self.background, Phase.CONTRACT: self.contracted}[phase]
        return done is not None and done >= version

    def latest(self, phase: str, version: Version, wave: str = WHOLE) -> HistoryEntry | None:
        return next(
            (
                e
                for e in reversed(self.history)
                if e.phase == phase and e.version == version and (e.wave or WHOLE) == wave
            ),
            None,
        )

    def by_job(self, name: str) -> HistoryEntry | None:
        return next((e for e in self.history if e.job == name), None)

    def is_recorded(self, job: str) -> bool:
        entry = self.by_job(job)
        return entry is not None and entry.result in FINAL

    def image_of(self, version: Version) -> str | None:
        """The image that expanded `version`: it carries that version's undo scripts."""
        return next(
            (
                e.image
                for e in reversed(self.history)
                if e.phase == Phase.EXPAND and e.result == Result.SUCCEEDED and e.version == version
            ),
            None,
        )

    def claim(self, request: JobRequest, now: datetime) -> None:
        """Record the claim; written with the status, so it is always guarded by resourceVersion."""
        entry = self.by_job(request.name)
        if entry is None:
            claimed = HistoryEntry(
                request.version,
                request.phase,
                request.name,
                request.attempt,
                request.image,
                Result.RUNNING,
                now,
                wave=request.wave or None,
            )
            self.history.append(claimed)
        else:
            self._put(entry, replace(entry, claimed_at=now))

    def late(self, job: JobView) -> bool:
        """Whether the Job is a create that landed after its claim was settled: its claim is bound
        to another uid, or finished without it, or gone (a suspended Job no claim names)."""
        entry = self.by_job(job.name)
        if entry is None:
            return job.suspended
        bound = entry.job_uid
        return bound not in (None, job.uid) or (bound is None and entry.result in FINAL and job.suspended)

    def bind(self, jobs: tuple[JobView, ...], now: datetime) -> Binding:
        """Bind each suspended Job to its running claim (once) and start it; delete late creates unrun."""
        start, delete = [], []
        for job in jobs:
            if not job.suspended or job.deleting:
                continue
            entry = self.by_job(job.name)
            if self.late(job):
                delete.append(JobRef(job.name, job.uid))
            elif entry is not None and entry.result == Result.RUNNING:
                if entry.job_uid is None:
                    self._put(entry, replace(entry, job_uid=job.uid, bound_at=now))
                start.append(JobRef(job.name, job.uid))
        return Binding(tuple(start), tuple(delete))

    def record_finished(self, observed: Observed) -> tuple[list[HistoryEntry], float | None]:
        """Write each finished Job's result into its history entry (once) and advance the versions.
        Also returns when to look again for a result still waiting for its pod's report."""
        done: list[HistoryEntry] = []
        retry = None
        for job in sorted(observed.jobs, key=lambda j: j.start or ""):
            entry = self.by_job(job.name)
            version = job.version
            if version is None or self.late(job) or (entry and entry.result in FINAL):
                continue
            if job.live:
                continue
            report = _report(observed.job_pods, job.name)
            waited = observed.now - (parse_time(job.finished) or observed.now)
            silent = report is None or unreported_indexes(job, observed.job_pods, indexes(job.completed_indexes))
            if silent and job.state != Result.RUNNING and waited < REPORT_GRACE:
                retry = 1.0
                continue
            finished = self._finish(job, version, entry, report, observed)
            # The canaries alone open no gate, nor a Job over an older target list (a target added while it ran).
            if finished.result == Result.SUCCEEDED and job.wave != CANARY and _covers_spec(job, observed.migration):
                self._advance(job.phase, version)
            done.append(finished)
        return done, retry

    def record_lost(self, observed: Observed) -> list[HistoryEntry]:
        """Bound claims whose Job is gone without a result (its finalizer was removed by hand):
        failed, since whether it ran is unknown; never claimed again under the same name."""
        present = {j.name for j in observed.jobs}
        lost = [
            e
            for e in self.history
            if e.result == Result.RUNNING
            and e.job not in present
            and observed.now - (e.bound_at or observed.now) > LOST_GRACE
        ]
        return [
            self._put(
                entry,
                replace(
                    entry,
                    result=Result.FAILED,
                    claimed_at=None,
                    bound_at=None,
                    completion_time=observed.now,
                    error=f"the Job {entry.job} was deleted before its result was recorded: check whether it ran",
                ),
            )
            for entry in lost
        ]

    def _finish(
        self,
        job: JobView,
        version: Version,
        entry: HistoryEntry | None,
        report: RunnerReport | None,
        observed: Observed,
    ) -> HistoryEntry:
        if entry is None:  # a Job we did not claim (history trimmed, or status lost): adopt its result
            entry = HistoryEntry(version, job.phase, job.name, job.attempt, job.image, None, wave=job.wave or None)
            self.history.append(entry)
        deleted_early = job.state == Result.RUNNING
        counts = tally(job, observed.job_pods) if job.fan_out else None  # a fan-out Job: one report per target
        finished = replace(
            entry,
            result=Result.FAILED if deleted_early else job.state,
            claimed_at=None,
            bound_at=None,
            start_time=parse_time(job.start),
            completion_time=parse_time(job.finished) or observed.now,
            applied=applied_total(job, observed.job_pods) if counts else report.applied if report else None,
            schema_version=report.schema_version if report else None,
            error="the Job was deleted before it finished" if deleted_early else _error(job, report, counts),
            targets=counts.to_api() if counts else None,
        )
        return self._put(entry, finished)

    def _put(self, old: HistoryEntry, new: HistoryEntry) -> HistoryEntry:
        """Replace `old` (the very object, not an equal one) with `new` where it stands."""
        self.history[next(i for i, e in enumerate(self.history) if e is old)] = new
        return new

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

    def bounded_history(self) -> list[HistoryEntry]:
        """The newest entries; claims still running are never dropped."""
        keep = self.history[-HISTORY_LIMIT:]
        running = [e for e in self.history[:-HISTORY_LIMIT] if e.result == Result.RUNNING]
        return running + keep


def next_job(
    ledger: Ledger,
    observed: Observed,
    migration: Migration,
    phase: str,
    version: Version,
    image: str,
    wave: str = WHOLE,
) -> JobVerdict:
    """Wait for, retry or claim the one Job of (phase, version, wave): the exactly-once rule.

    One Job at a time per lane; a failed attempt is final until the attempt key changes;
    a fresh claim is left to its Job; a stale one is claimed again under the same name."""
    busy = [j for j in observed.jobs if lane(j.phase) == lane(phase) and j.live]
    if busy:
        return JobVerdict(
            waiting=f"{busy[0].phase} Job {busy[0].name} (version {busy[0].version}) is running", running=busy[0]
        )
    attempt = attempt_key(migration)
    latest = ledger.latest(phase, version, wave)
    if latest and latest.result == Result.FAILED and latest.attempt == attempt:
        return JobVerdict(failed=latest)
    name = job_name(migration, phase, version, attempt, wave)
    if latest and latest.result == Result.RUNNING and latest.job_uid:
        # Its Job was created and bound, so it is never created again: wait for the watch, or for
        # record_finished to call it lost.
        bound = observed.now - (latest.bound_at or observed.now)
        recheck = max(1.0, (LOST_GRACE - bound).total_seconds())  # never a busy loop once the grace is over
        return JobVerdict(waiting=f"waiting for {phase} Job {latest.job}", requeue_after=recheck)
    if latest and latest.result == Result.RUNNING:
        age = observed.now - (latest.claimed_at or observed.now)
        if age < CLAIM_GRACE:
            return JobVerdict(
                waiting=f"starting {phase} Job {latest.job}", requeue_after=(CLAIM_GRACE - age).total_seconds()
            )
        attempt, name = latest.attempt if latest.attempt is not None else attempt, latest.job
    request = JobRequest(phase, version, attempt, name, image, wave)
    return JobVerdict(request=request, waiting=f"starting {phase} Job {name}")


def attempt_key(migration: Migration) -> str:
    """Changes when the spec changes or the retry annotation does: the only ways to retry a failed
    Job; with a Secret selector also when its matches do, as a spec listing them would (the
    canary selector's too: relabelling the canaries is editing the canary wave)."""
    targets = migration.spec.targets
    matched = f"/{digest(targets.names)}" if targets and targets.selector else ""
    matched += f"/{digest(targets.names[: targets.canary])}" if targets and targets.canary_selector else ""
    return hashlib.sha256(f"{migration.generation}/{migration.retry_token}{matched}".encode()).hexdigest()[:6]


def job_name(migration: Migration, phase: str, version: Version, attempt: str, wave: str = WHOLE) -> str:
    """Deterministic per (SchemaMigration instance, phase, version, attempt, wave): a DNS-1123 label
    of at most 63 characters, since the Job controller copies it into its pods' job-name label."""
    key = f"{migration.uid}/{phase}/{version}/{attempt}" + (f"/{wave}" if wave else "")
    digest = hashlib.sha256(key.encode()).hexdigest()[:5]
    phase = f"{phase}-{wave}" if wave else phase
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


def _covers_spec(job: JobView, migration: Migration | None) -> bool:
    """Whether the Job covered every target its wave lists now; if not, the phase runs again over
    them all (plan_for), and only that Job's success advances the version: the gate opens once
    every target expanded."""
    targets = migration.spec.targets if migration else None
    return targets is None or digest(job.listing()) == digest(wave_targets(targets, job.wave or WHOLE).listing())


def _over_budget(job: JobView) -> str:
    """Why Kubernetes stopped the Job: maxFailedIndexes counts indexes, each a pod of perPod targets."""
    most = f" ({job.max_failed})" if job.max_failed is not None else ""
    said = f"more indexes failed than spec.targets.maxFailed{most} allows"
    if job.per_pod == 1:
        return said
    targets = f"up to {job.max_failed * job.per_pod} targets" if job.max_failed is not None else "more targets"
    return f"{said} (it counts indexes, each a pod of {job.per_pod} targets with spec.targets.perPod {job.per_pod}: {targets})"


def _newer(current: Version | None, version: Version) -> Version:
    return version if current is None else max(current, version)


def _report(job_pods: tuple[JobPodView, ...], job: str) -> RunnerReport | None:
    pods = sorted((p for p in job_pods if p.job == job and p.report), key=lambda p: p.finished or "")
    return pods[-1].report if pods else None


def _error(job: JobView, report: RunnerReport | None, counts: Tally | None = None) -> str | None:
    """Why a finished Job failed: the deadline first (the runner's last words then are only where
    it was stopped), then the failed targets of a fan-out Job, then the runner's own error, then
    what Kubernetes says."""
    said = counts.error() if counts else report.error if report else None
    if job.state != Result.FAILED:
        return said
    if said and counts and job.failed_reason == "MaxFailedIndexesExceeded":
        return f"{said}; {_over_budget(job)}, so the Job stopped the others"
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

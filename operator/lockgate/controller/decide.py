"""What the operator does for one SchemaMigration, decided from what it observes (pure).

decide(Observed) -> Decision holds every rule of the operator; the kopf shell only gathers
the observed state, writes the status, creates Jobs, patches pod gates and posts events.

Exactly once rests on two rules the shell enforces:
- a Job is created only after a status write that claims it (a `Running` history entry),
  guarded by resourceVersion, so two replicas cannot both claim it;
- a Job keeps the `lockgate.dev/result` finalizer until its result is in status.history,
  so TTL deletion cannot erase a result before it is recorded.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from ..versions import Version
from .conditions import ORDER, became_true, condition, find
from .observed import (
    ACTIVE,
    FAILED,
    SUCCEEDED,
    JobPodView,
    JobView,
    PodView,
    RunnerReport,
    WorkloadView,
    iso,
    parse_time,
    parse_version,
)
from .spec import UNDO, Migration

HISTORY_LIMIT = 20
RUNNING = "Running"
# A claim younger than this is left alone while the Job shows up in the watch; an older one
# whose Job never appeared means the operator stopped between claim and create.
CLAIM_GRACE = timedelta(seconds=10)
# Pods and Jobs arrive on separate watches: a Job may finish before its pod's termination
# message is seen. Its result waits this long for the runner's summary, then goes without.
REPORT_GRACE = timedelta(seconds=5)
LANES = {UNDO: "expand"}  # undo and expand take the same runner lock: never side by side
NOT_STALLED = (False, "NoFailure", "no Job of this version has failed")
RESULTS = {SUCCEEDED: "Succeeded", FAILED: "Failed"}


@dataclass(frozen=True)
class Observed:
    migration: Migration | None
    namespace: str
    name: str
    jobs: tuple[JobView, ...] = ()
    job_pods: tuple[JobPodView, ...] = ()
    workloads: tuple[WorkloadView, ...] = ()
    pods: tuple[PodView, ...] = ()
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    error: str | None = None  # why the operator's last attempt to act failed (e.g. a 403), if it did


@dataclass(frozen=True)
class JobRequest:
    phase: str
    version: str  # what the Job is for (its label)
    target: str  # --target for migrate, --to for undo
    attempt: str
    name: str
    image: str


@dataclass(frozen=True)
class GatePatch:
    pod: str
    ready: bool
    reason: str
    message: str
    waited_seconds: float | None = None


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    status: dict[str, Any] | None = None  # the whole new status, when it changed
    create: JobRequest | None = None  # only ever together with a status write (the claim)
    gates: tuple[GatePatch, ...] = ()
    release: tuple[str, ...] = ()  # Jobs whose result finalizer may go once the status is written
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None
    finished: tuple[dict[str, Any], ...] = ()  # history entries this decision completes


def decide(observed: Observed) -> Decision:
    migration = observed.migration
    if migration is None or migration.deleting:
        return _without_migration(observed, deleting=migration is not None)
    ours = tuple(j for j in observed.jobs if j.owner_uid == migration.uid)
    foreign = tuple(j.name for j in observed.jobs if j.owner_uid != migration.uid and j.has_finalizer)
    observed = dataclasses.replace(observed, jobs=ours)
    ledger = Ledger.from_status(migration.status)
    finished, report_retry = ledger.record_finished(observed)
    plan = Planner(migration, ledger, observed).plan()
    if observed.error:
        plan = _blocked(plan, observed.error)
    status = without_nulls(_status(migration, ledger, plan, observed))
    changed = status != migration.status
    return Decision(
        status=status if changed else None,
        create=plan.request,
        gates=gate_patches(observed, ledger.expanded),
        release=foreign
        + tuple(
            j.name for j in ours if j.has_finalizer and (j.state != ACTIVE or j.deleting) and ledger.is_recorded(j.name)
        ),
        events=_events(migration, status, plan, finished),
        requeue_after=min(filter(None, (plan.requeue_after, report_retry)), default=None),
        finished=tuple(finished),
    )


# the ledger: status.history plus the versions each phase has reached


@dataclass
class Ledger:
    history: list[dict[str, Any]]
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

    def latest(self, phase: str, version: Version) -> dict[str, Any] | None:
        return next(
            (e for e in reversed(self.history) if e["phase"] == phase and parse_version(e["version"]) == version), None
        )

    def by_job(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.history if e["job"] == name), None)

    def is_recorded(self, job: str) -> bool:
        entry = self.by_job(job)
        return entry is not None and entry["result"] in RESULTS.values()

    def image_of(self, version: Version) -> str | None:
        """The image that expanded `version`: it carries that version's undo scripts."""
        return next(
            (
                e["image"]
                for e in reversed(self.history)
                if e["phase"] == "expand" and e["result"] == "Succeeded" and parse_version(e["version"]) == version
            ),
            None,
        )

    def claim(self, request: JobRequest, now: str) -> None:
        entry = self.by_job(request.name)
        if entry is None:
            entry = {
                "version": request.version,
                "phase": request.phase,
                "job": request.name,
                "attempt": request.attempt,
                "image": request.image,
                "result": RUNNING,
            }
            self.history.append(entry)
        entry["claimedAt"] = now  # a claim is always a status change, so it is always guarded by resourceVersion

    def record_finished(self, observed: Observed) -> tuple[list[dict[str, Any]], float | None]:
        """Write each finished Job's result into its history entry (once) and advance the versions.
        Also returns when to look again for a result still waiting for its pod's report."""
        done, retry = [], None
        for job in sorted(observed.jobs, key=lambda j: j.start or ""):
            entry = self.by_job(job.name)
            version = parse_version(job.version)
            if (
                version is None
                or (job.state == ACTIVE and not job.deleting)
                or (entry and entry["result"] in RESULTS.values())
            ):
                continue
            report = _report(observed.job_pods, job.name)
            waited = observed.now - (parse_time(job.finished) or observed.now)
            if report is None and job.state != ACTIVE and waited < REPORT_GRACE:
                retry = min(retry or 1.0, 1.0)
                continue
            entry = self._finish(job, entry, report, observed.now)
            if entry["result"] == "Succeeded":
                self._advance(job.phase, version)
            done.append(entry)
        return done, retry

    def _finish(
        self, job: JobView, entry: dict[str, Any] | None, report: RunnerReport | None, now: datetime
    ) -> dict[str, Any]:
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
        entry.update(
            result="Failed" if deleted_early else RESULTS[job.state],
            startTime=job.start,
            completionTime=job.finished or iso(now),
            applied=report.applied if report else None,
            schemaVersion=report.schema_version if report else None,
            error="the Job was deleted before it finished"
            if deleted_early
            else (report.error if report else None) or _default_error(job, report),
        )
        return entry

    def _advance(self, phase: str, version: Version) -> None:
        if phase == "expand":
            self.expanded = max(filter(None, (self.expanded, version)))
        elif phase == "background":
            self.background = max(filter(None, (self.background, version)))
        elif phase == "contract":
            self.contracted = max(filter(None, (self.contracted, version)))
        elif phase == UNDO:
            self.expanded = version
            self.background = min(self.background, version) if self.background else None

    def bounded_history(self) -> list[dict[str, Any]]:
        """The newest entries; claims still running are never dropped."""
        keep = self.history[-HISTORY_LIMIT:]
        running = [e for e in self.history[:-HISTORY_LIMIT] if e["result"] == RUNNING]
        return running + keep


def _report(job_pods: tuple[JobPodView, ...], job: str) -> RunnerReport | None:
    pods = sorted((p for p in job_pods if p.job == job and p.report), key=lambda p: p.finished or "")
    return pods[-1].report if pods else None


def _default_error(job: JobView, report: RunnerReport | None) -> str | None:
    if job.state != FAILED:
        return None
    return (
        f"the container exited with code {report.exit_code}"
        if report
        else "the Job failed (no pod result was found: see its Events)"
    )


# the plan for the target version


@dataclass
class Plan:
    phase: str
    ready: tuple[bool, str, str]
    reconciling: tuple[bool, str, str]
    stalled: tuple[bool, str, str]
    rolled_out: tuple[bool, str, str]
    contracted: tuple[bool, str, str]
    request: JobRequest | None = None
    requeue_after: float | None = None


class Planner:
    """Walks the phases of spec.version in order and stops at the first one that is not done."""

    def __init__(self, migration: Migration, ledger: Ledger, observed: Observed) -> None:
        self.m, self.ledger, self.observed = migration, ledger, observed
        self.target = migration.spec.version
        self.now = iso(observed.now)

    def plan(self) -> Plan:
        expanded = self.ledger.expanded
        if expanded is not None and self.target < expanded:
            return self._lowered(expanded)
        return self._forward()

    def _forward(self) -> Plan:
        v = self.target
        if not (self.ledger.expanded and self.ledger.expanded >= v):
            return self._expanding()
        rolled_out = rollout(self.observed, v, self.m.spec.gate_kinds)
        background_done = not self.m.spec.phase("background").enabled or bool(
            self.ledger.background and self.ledger.background >= v
        )
        plan = self._after_expand(rolled_out, background_done)
        if not background_done:
            step = self._step("background", v, v, self.m.spec.image)
            if step.failed:
                return self._failed(plan, step.failed)
            plan.request, plan.requeue_after = step.request, step.requeue_after
            plan.phase = "Backfilling"
            return plan
        return self._contract(plan, rolled_out)

    def _expanding(self) -> Plan:
        step = self._step("expand", self.target, self.target, self.m.spec.image)
        waiting = (False, "RolloutWaiting", "waiting for the expand phase")
        not_contracted = (False, "WaitingForExpand", "contract runs after expand and the rollout")
        plan = Plan(
            phase="Expanding",
            ready=(False, "Expanding", f"expanding the schema to {self.target}: pods requiring it wait at the gate"),
            reconciling=(True, "Expanding", step.waiting or f"expand Job for {self.target} is running"),
            stalled=NOT_STALLED,
            rolled_out=waiting,
            contracted=not_contracted,
            request=step.request,
            requeue_after=step.requeue_after,
        )
        return self._failed(plan, step.failed) if step.failed else plan

    def _after_expand(self, rolled_out: tuple[bool, str, str], background_done: bool) -> Plan:
        return Plan(
            phase="RollingOut",
            ready=(True, "SchemaExpanded", f"schema {self.target} is expanded: pods requiring it pass the gate"),
            reconciling=(False, "SchemaExpanded", "the gate is open; background and contract continue on their own"),
            stalled=NOT_STALLED,
            rolled_out=rolled_out,
            contracted=(False, "WaitingForRollout", "contract runs after background and the rollout complete"),
        )

    def _contract(self, plan: Plan, rolled_out: tuple[bool, str, str]) -> Plan:
        v, spec = self.target, self.m.spec
        if not spec.phase("contract").enabled:
            plan.contracted = (False, "Disabled", "contract.enabled is false")
            plan.phase = "Complete" if rolled_out[0] else "RollingOut"
            return plan
        if self.ledger.contracted and self.ledger.contracted >= v:
            plan.contracted = (True, "Contracted", f"the contract phase of {v} is done")
            plan.phase = "Complete"
            return plan
        if not rolled_out[0]:
            return plan
        remaining = self._delay_remaining(plan)
        if remaining > 0:
            plan.phase, plan.requeue_after = "ContractPending", remaining
            plan.contracted = (
                False,
                "Delayed",
                f"contract starts after contract.delay ({spec.contract_delay}); {remaining:.0f}s to go",
            )
            return plan
        if spec.contract_requires_approval and self.m.approved_version != str(v):
            plan.phase = "AwaitingApproval"
            plan.contracted = (
                False,
                "AwaitingApproval",
                f"annotate lockgate.dev/approve-contract={v} to run the contract phase",
            )
            return plan
        step = self._step("contract", v, v, spec.image)
        if step.failed:
            return self._failed(plan, step.failed)
        plan.phase, plan.request, plan.requeue_after = "Contracting", step.request, step.requeue_after
        plan.contracted = (False, "Contracting", step.waiting or f"contract Job for {v} is running")
        return plan

    def _delay_remaining(self, plan: Plan) -> float:
        delay = self.m.spec.contract_delay
        if not delay:
            return 0.0
        since = find(self.m.status.get("conditions") or [], "RolledOut")
        started = (
            parse_time(since["lastTransitionTime"]) if since and since.get("status") == "True" else self.observed.now
        )
        return max(0.0, (started + delay - self.observed.now).total_seconds())

    def _lowered(self, expanded: Version) -> Plan:
        v = self.target
        if self.m.spec.rollback_policy != "Undo":
            kept = (
                True,
                "NewerSchemaKept",
                f"spec.version {v} is below the expanded {expanded}; rollback.policy Never keeps the newer schema (expand is additive), so nothing runs and pods requiring <= {expanded} pass the gate",
            )
            return Plan(
                "NewerSchemaKept",
                kept,
                (False, "NewerSchemaKept", kept[2]),
                (False, "NewerSchemaKept", ""),
                (True, "NewerSchemaKept", ""),
                (False, "NewerSchemaKept", ""),
            )
        image = self.ledger.image_of(expanded)
        plan = Plan(
            phase="RollingBack",
            ready=(False, "RollingBack", f"undoing the schema from {expanded} to {v}"),
            reconciling=(True, "RollingBack", f"undo Job to {v} is running"),
            stalled=NOT_STALLED,
            rolled_out=(False, "RollingBack", ""),
            contracted=(False, "RollingBack", ""),
        )
        if image is None:
            plan.stalled = (
                True,
                "NoUndoImage",
                f"no image is recorded for version {expanded}, so its undo scripts cannot be run; apply them by hand or restore spec.version",
            )
            plan.phase, plan.reconciling = "Failed", (False, "Stalled", "")
            return plan
        step = self._step(UNDO, v, v, image)
        plan.request, plan.requeue_after = step.request, step.requeue_after
        return self._failed(plan, step.failed) if step.failed else plan

    def _failed(self, plan: Plan, entry: dict[str, Any]) -> Plan:
        message = f"{entry['phase']} Job {entry['job']} failed: {entry.get('error') or 'see its logs'}; fix the cause, then change the spec or set the lockgate.dev/retry annotation to retry"
        plan.phase = "Failed"
        plan.stalled = (True, "JobFailed", message)
        plan.ready = (False, "JobFailed", message)
        plan.reconciling = (False, "Stalled", "")
        plan.request = None
        return plan

    def _step(self, phase: str, version: Version, target: Version, image: str) -> Step:
        """Wait for, retry or claim the one Job of (phase, version)."""
        lane = LANES.get(phase, phase)
        active = [
            j
            for j in self.observed.jobs
            if LANES.get(j.phase, j.phase) == lane and j.state == ACTIVE and not j.deleting
        ]
        if active:
            return Step(waiting=f"{active[0].phase} Job {active[0].name} (version {active[0].version}) is running")
        attempt = attempt_key(self.m)
        latest = self.ledger.latest(phase, version)
        if latest and latest["result"] == "Failed" and latest.get("attempt") == attempt:
            return Step(failed=latest)
        if latest and latest["result"] == RUNNING:
            age = self.observed.now - (parse_time(latest.get("claimedAt")) or self.observed.now)
            if age < CLAIM_GRACE:
                return Step(
                    waiting=f"starting {phase} Job {latest['job']}", requeue_after=(CLAIM_GRACE - age).total_seconds()
                )
            attempt = latest.get("attempt", attempt)
        name = latest["job"] if latest and latest["result"] == RUNNING else job_name(self.m, phase, version, attempt)
        request = JobRequest(phase, str(version), str(target), attempt, name, image)
        self.ledger.claim(request, self.now)
        return Step(request=request, waiting=f"starting {phase} Job {name}")


@dataclass(frozen=True)
class Step:
    request: JobRequest | None = None
    failed: dict[str, Any] | None = None
    waiting: str | None = None
    requeue_after: float | None = None


def attempt_key(migration: Migration) -> str:
    """Changes when the spec changes or the retry annotation does: the only ways to retry a failed Job."""
    return hashlib.sha256(f"{migration.generation}/{migration.retry_token}".encode()).hexdigest()[:6]


def job_name(migration: Migration, phase: str, version: Version, attempt: str) -> str:
    """Deterministic per (SchemaMigration instance, phase, version, attempt), at most 63 characters."""
    digest = hashlib.sha256(f"{migration.uid}/{phase}/{version}/{attempt}".encode()).hexdigest()[:5]
    suffix = f"-{phase}-{re.sub(r'[^0-9]+', '-', str(version))}-{digest}"
    return migration.name[: 63 - len(suffix)].rstrip("-.") + suffix


# rollout and gate


def rollout(observed: Observed, target: Version, kinds: tuple[str, ...]) -> tuple[bool, str, str]:
    """Whether every gated workload finished its rollout and no pod still needs an older schema."""
    old_pods = [p.name for p in observed.pods if (parse_version(p.required) or Version((0,))) < target]
    workloads = [w for w in observed.workloads if w.kind in kinds]
    pending = [
        f"{w.kind}/{w.name}"
        for w in workloads
        if not w.rolled_out or (parse_version(w.required) or Version((0,))) < target
    ]
    if pending or old_pods:
        waiting = ", ".join((pending + [f"pod/{p}" for p in old_pods])[:3])
        more = len(pending) + len(old_pods) - 3
        return (
            False,
            "RollingOut",
            f"waiting for {waiting}{f' and {more} more' if more > 0 else ''} to run only pods requiring >= {target}",
        )
    return True, "RolloutComplete", f"{len(workloads)} gated workload(s) run only pods requiring >= {target}"


def gate_patches(observed: Observed, expanded: Version | None) -> tuple[GatePatch, ...]:
    patches = []
    for pod in observed.pods:
        if pod.deleting:
            continue
        ready, reason, message = gate_for(pod, observed, expanded)
        if pod.gate == ("True" if ready else "False", reason):
            continue
        if observed.migration is None and pod.gate and pod.gate[0] == "True":
            continue  # never take a serving pod out because its SchemaMigration went away
        created = parse_time(pod.created)
        waited = (observed.now - created).total_seconds() if ready and created and pod.gate is not None else None
        patches.append(GatePatch(pod.name, ready, reason, message, waited))
    return tuple(patches)


def gate_for(pod: PodView, observed: Observed, expanded: Version | None) -> tuple[bool, str, str]:
    if observed.migration is None:
        return False, "SchemaMigrationNotFound", f"no SchemaMigration {observed.name} in namespace {observed.namespace}"
    if not pod.required:
        return (
            False,
            "MissingRequiredVersion",
            "set the pod template annotation lockgate.dev/requires-version to the schema version this code needs",
        )
    required = parse_version(pod.required)
    if required is None:
        return (
            False,
            "InvalidRequiredVersion",
            f"lockgate.dev/requires-version {pod.required!r} is not a dotted version such as 3 or 1.10",
        )
    if expanded is not None and required <= expanded:
        return (
            True,
            "SchemaReady",
            f"schema {expanded} satisfies the required {required} (SchemaMigration {observed.name})",
        )
    return (
        False,
        "WaitingForSchema",
        f"waiting for SchemaMigration {observed.name} to expand schema {required} (expanded: {expanded or 'none yet'})",
    )


# status and events


def _blocked(plan: Plan, error: str) -> Plan:
    """The operator itself cannot act (RBAC, API errors): say so where users look."""
    message = f"the operator cannot act: {error}"
    return dataclasses.replace(plan, stalled=(True, "OperatorError", message), ready=(False, "OperatorError", message))


def _status(m: Migration, ledger: Ledger, plan: Plan, observed: Observed) -> dict[str, Any]:
    old = m.status.get("conditions") or []
    now, gen = iso(observed.now), m.generation
    values = {
        "Ready": plan.ready,
        "Reconciling": plan.reconciling,
        "Stalled": plan.stalled,
        "RolledOut": plan.rolled_out,
        "Contracted": plan.contracted,
    }
    expanded = bool(ledger.expanded and ledger.expanded >= m.spec.version)
    values["Expanded"] = (
        (True, "Expanded", f"schema is expanded to {ledger.expanded}")
        if expanded
        else (False, "Expanding", f"schema {m.spec.version} is not expanded yet")
    )
    history = ledger.bounded_history()
    waiting = sum(1 for p in observed.pods if not p.deleting and not gate_for(p, observed, ledger.expanded)[0])
    return {
        "observedGeneration": gen,
        "phase": plan.phase,
        "targetVersion": str(m.spec.version),
        "appliedVersion": _str(ledger.expanded),
        "backgroundVersion": _str(ledger.background),
        "contractedVersion": _str(ledger.contracted),
        "conditions": [condition(old, kind, *values[kind], now, gen) for kind in ORDER],
        "jobs": {e["phase"]: e["job"] for e in history},
        "history": history,
        "gate": {
            "workloads": [
                {
                    "kind": w.kind,
                    "name": w.name,
                    "requiresVersion": w.required,
                    "updated": w.updated,
                    "available": w.available,
                    "desired": w.desired,
                    "rolledOut": w.rolled_out,
                }
                for w in sorted(observed.workloads, key=lambda w: (w.kind, w.name))
            ],
            "podsWaiting": waiting,
            "podsReady": sum(1 for p in observed.pods if not p.deleting) - waiting,
        },
    }


def _events(m: Migration, status: dict[str, Any], plan: Plan, finished: list[dict[str, Any]]) -> tuple[Event, ...]:
    events = [_finished_event(e) for e in finished]
    if plan.request and (m.status.get("jobs") or {}).get(plan.request.phase) != plan.request.name:
        events.append(
            Event(
                "Normal",
                "JobCreated",
                f"created {plan.request.phase} Job {plan.request.name} for version {plan.request.version}",
            )
        )
    old, new = m.status.get("conditions") or [], status["conditions"]
    if became_true(old, new, "Stalled") and find(new, "Stalled")["reason"] == "OperatorError":
        events.append(Event("Warning", "OperatorError", find(new, "Stalled")["message"]))
    if became_true(old, new, "RolledOut"):
        events.append(Event("Normal", "RolledOut", find(new, "RolledOut")["message"]))
    if status["phase"] != m.status.get("phase") and status["phase"] in (
        "NewerSchemaKept",
        "AwaitingApproval",
        "ContractPending",
    ):
        events.append(
            Event(
                "Normal",
                status["phase"],
                find(new, "Ready")["message"]
                if status["phase"] == "NewerSchemaKept"
                else find(new, "Contracted")["message"],
            )
        )
    return tuple(events)


def _finished_event(entry: dict[str, Any]) -> Event:
    phase = entry["phase"]
    if entry["result"] == "Succeeded":
        applied = f": {entry['applied']} migration(s) applied" if entry.get("applied") is not None else ""
        return Event(
            "Normal",
            f"{phase.capitalize()}Succeeded",
            f"{phase} Job {entry['job']} for version {entry['version']} succeeded{applied}",
        )
    return Event(
        "Warning",
        f"{phase.capitalize()}Failed",
        f"{phase} Job {entry['job']} for version {entry['version']} failed: {entry.get('error')}",
    )


def _without_migration(observed: Observed, deleting: bool) -> Decision:
    """The SchemaMigration is gone or going: let go of its Jobs; hold only new pods at the gate."""
    release = tuple(j.name for j in observed.jobs if j.has_finalizer)
    return Decision(gates=() if deleting else gate_patches(observed, None), release=release)


def without_nulls(value: Any) -> Any:
    """The status as the API server stores it: a merge patch drops null fields, so a status
    with nulls would never compare equal to what is stored, and be written again and again."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def merge_patch(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """An RFC 7386 merge patch from `current` to `desired`: fields that must go become null."""
    patch: dict[str, Any] = {key: None for key in current if key not in desired}
    for key, value in desired.items():
        old = current.get(key)
        patch[key] = merge_patch(old, value) if isinstance(value, dict) and isinstance(old, dict) else value
    return patch


def _str(version: Version | None) -> str | None:
    return str(version) if version else None

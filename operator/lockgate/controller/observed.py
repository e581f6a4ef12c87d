"""Compact, typed views of the objects the operator watches (pure).

The kopf indexes store these views rather than whole objects, which keeps memory flat
and gives the decision function plain values to work with. A view is read straight from the
watch event's body (kopf's read-only view of it) and keeps only scalars and strings: nothing
of the body stays alive through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..shared.progress import Progress
from ..shared.report import RunnerReport, parse_report
from ..shared.targets import FIRST_INDEX_ENV, INDEXES_ENV, NAMES_ENV, PER_POD_ENV, QUERY_ENV, query_listing, split
from ..shared.versions import Version
from .conditions import find
from .history_entry import Result
from .spec import (
    ATTEMPT_LABEL,
    GATE_CONDITION,
    PHASE_LABEL,
    REQUIRES_ANNOTATION,
    RESULT_FINALIZER,
    VERSION_LABEL,
    WAVE_LABEL,
    Migration,
)

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"  # on an Indexed Job's pods


@dataclass(frozen=True)
class JobView:
    name: str
    phase: str
    version: Version | None  # None: no readable version label (not a Job lockgate made)
    attempt: str
    image: str
    state: Result  # RUNNING until Kubernetes says Complete (SUCCEEDED) or Failed
    start: str | None
    finished: str | None
    has_finalizer: bool
    deleting: bool
    owner_uid: str | None
    uid: str = ""
    suspended: bool = False  # not bound to its claim yet (ledger.bind), or paused (background.py)
    failed_reason: str = ""  # the Failed condition's reason: DeadlineExceeded, BackoffLimitExceeded, ...
    failed_message: str = ""
    deadline: int | None = None  # spec.activeDeadlineSeconds
    failed_pods: int = 0
    targets: tuple[str, ...] = ()  # a fan-out Job's tenants, in index order; empty for one database
    per_pod: int = 1  # how many of them each index migrates (shared.targets.per_index)
    completed_indexes: str = ""  # an Indexed Job's status: "0,2-4"
    failed_indexes: str = ""
    active: int = 0
    wave: str = ""  # with a canary: canary or rest (targets.waves)
    max_failed: int | None = None  # spec.maxFailedIndexes: the failed indexes, not targets, it allows
    query: str = ""  # a schemaQuery's Job: the SQL its pods run to list their schemas (`targets` empty)
    indexes: int = 0  # a schemaQuery's Job: the shards its query's schemas hash to
    first_index: int = 0  # ... its index i migrating shard first_index + i (a canary's rest Job)
    completions: int = 0  # ... spec.completions: its own indexes (0: every shard from first_index on)

    @property
    def fan_out(self) -> bool:
        """An Indexed Job over many targets, listed or queried."""
        return bool(self.targets or self.indexes)

    @property
    def index_count(self) -> int:
        """A schemaQuery Job's own indexes: its wave's shards."""
        return self.completions or self.indexes - self.first_index

    def listing(self) -> tuple[str, ...]:
        """Its target list, as spec.targets gives it (targets.Targets.listing)."""
        if self.indexes:
            return query_listing(self.query, self.indexes, self.first_index, self.index_count)
        return self.targets

    @property
    def live(self) -> bool:
        """Neither finished nor being deleted: it holds its lane."""
        return self.state == Result.RUNNING and not self.deleting


@dataclass(frozen=True)
class JobPodView:
    """A pod of a migration Job: what its container said when it ended."""

    name: str
    job: str
    finished: str | None
    report: RunnerReport | None
    started: bool = False  # a container ran (or runs): the pod got past scheduling, volumes and images
    problem: tuple[str, str] | None = None  # (reason, message) the kubelet or scheduler gives for not starting
    created: str | None = None
    index: int | None = None  # its completion index, in an Indexed Job


@dataclass(frozen=True)
class WarningView:
    """A Warning Event about a migration Job or one of its pods."""

    subject: str  # the Job's or pod's name
    reason: str
    message: str
    last_seen: str | None = None


@dataclass(frozen=True)
class PodView:
    """A gated application pod."""

    name: str
    required: Version | None
    gate: tuple[str, str] | None  # (status, reason) of the gate condition, if set
    created: str | None
    deleting: bool
    unreadable: str | None = None  # the requires-version annotation, when it is not a version


@dataclass(frozen=True)
class WorkloadView:
    kind: str
    name: str
    required: Version | None
    desired: int
    updated: int
    available: int
    rolled_out: bool


@dataclass(frozen=True)
class Observed:
    """Everything decide() sees of one SchemaMigration and what depends on it."""

    migration: Migration | None
    namespace: str
    name: str
    jobs: tuple[JobView, ...] = ()
    job_pods: tuple[JobPodView, ...] = ()
    workloads: tuple[WorkloadView, ...] = ()
    pods: tuple[PodView, ...] = ()
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    error: str | None = None  # why the operator's last attempt to act failed (e.g. a 403), if it did
    warnings: tuple[WarningView, ...] = ()  # Warning Events about Jobs that run no container (diagnosis.py)
    progress: dict[str, Progress] = field(default_factory=dict)  # background pod -> its last progress line


def job_view(body: Mapping[str, Any]) -> JobView:
    meta, status = body["metadata"], body.get("status") or {}
    labels = meta.get("labels") or {}
    containers = body.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or [{}]
    owner = next((o.get("uid") for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
    failed = _failed(status)
    return JobView(
        name=meta["name"],
        phase=labels.get(PHASE_LABEL, ""),
        version=Version.parse_or_none((meta.get("annotations") or {}).get(VERSION_LABEL, labels.get(VERSION_LABEL))),
        attempt=labels.get(ATTEMPT_LABEL, ""),
        image=containers[0].get("image", ""),
        state=job_state(status),
        start=status.get("startTime") or meta.get("creationTimestamp"),
        finished=status.get("completionTime") or failed.get("lastTransitionTime"),
        has_finalizer=RESULT_FINALIZER in (meta.get("finalizers") or []),
        deleting=bool(meta.get("deletionTimestamp")),
        owner_uid=owner,
        uid=meta.get("uid", ""),
        suspended=bool(body.get("spec", {}).get("suspend")),
        failed_reason=failed.get("reason", ""),
        failed_message=failed.get("message", ""),
        deadline=body.get("spec", {}).get("activeDeadlineSeconds"),
        failed_pods=status.get("failed", 0),
        targets=split(_env(containers[0], NAMES_ENV)),
        per_pod=max(1, int(per_pod)) if (per_pod := _env(containers[0], PER_POD_ENV)).isdigit() else 1,
        completed_indexes=status.get("completedIndexes") or "",
        failed_indexes=status.get("failedIndexes") or "",
        active=status.get("active", 0),
        wave=labels.get(WAVE_LABEL, ""),
        max_failed=body.get("spec", {}).get("maxFailedIndexes"),
        query=_env(containers[0], QUERY_ENV),
        indexes=int(count) if (count := _env(containers[0], INDEXES_ENV)).isdigit() else 0,
        first_index=int(first) if (first := _env(containers[0], FIRST_INDEX_ENV)).isdigit() else 0,
        completions=made if isinstance(made := body.get("spec", {}).get("completions"), int) else 0,
    )


def _env(container: dict[str, Any], name: str) -> str:
    return next((e.get("value") or "" for e in container.get("env") or [] if e.get("name") == name), "")


def job_state(status: dict[str, Any]) -> Result:
    for condition in status.get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return Result.SUCCEEDED if condition["type"] == "Complete" else Result.FAILED
    return Result.RUNNING


def job_pod_view(body: Mapping[str, Any]) -> JobPodView:
    meta, status = body["metadata"], body.get("status") or {}
    terminated = next(
        (
            s["state"]["terminated"]
            for s in status.get("containerStatuses") or []
            if (s.get("state") or {}).get("terminated")
        ),
        None,
    )
    containers = status.get("containerStatuses") or []
    return JobPodView(
        name=meta["name"],
        job=(meta.get("labels") or {}).get("job-name", ""),
        finished=terminated.get("finishedAt") if terminated else None,
        report=parse_report(terminated.get("message"), terminated.get("exitCode")) if terminated else None,
        started=any({"running", "terminated"} & set(c.get("state") or {}) for c in containers),
        problem=_waiting_problem(containers) or _unschedulable(status),
        created=meta.get("creationTimestamp"),
        index=_completion_index(meta),
    )


def _completion_index(meta: dict[str, Any]) -> int | None:
    text = (meta.get("annotations") or {}).get(COMPLETION_INDEX) or (meta.get("labels") or {}).get(COMPLETION_INDEX)
    return int(text) if text and text.isdigit() else None


# Waiting reasons of a container on its normal way to running.
_ON_ITS_WAY = frozenset({"ContainerCreating", "PodInitializing"})


def _waiting_problem(containers: list[dict[str, Any]]) -> tuple[str, str] | None:
    for c in containers:
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") and waiting["reason"] not in _ON_ITS_WAY:
            return waiting["reason"], waiting.get("message", "")
    return None


def _unschedulable(status: dict[str, Any]) -> tuple[str, str] | None:
    scheduled = find(status.get("conditions") or [], "PodScheduled")
    if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        return "Unschedulable", scheduled.get("message", "")
    return None


def pod_view(body: Mapping[str, Any]) -> PodView:
    meta, status = body["metadata"], body.get("status") or {}
    gate = next(
        (
            (c.get("status", ""), c.get("reason", ""))
            for c in status.get("conditions") or []
            if c.get("type") == GATE_CONDITION
        ),
        None,
    )
    text = (meta.get("annotations") or {}).get(REQUIRES_ANNOTATION)
    required = Version.parse_or_none(text)
    return PodView(
        name=meta["name"],
        required=required,
        gate=gate,
        created=meta.get("creationTimestamp"),
        deleting=bool(meta.get("deletionTimestamp")),
        unreadable=text if text and required is None else None,
    )


def workload_view(body: Mapping[str, Any]) -> WorkloadView:
    kind, meta = body.get("kind", ""), body["metadata"]
    spec, status = body.get("spec") or {}, body.get("status") or {}
    template_annotations = (spec.get("template", {}).get("metadata") or {}).get("annotations") or {}
    current = status.get("observedGeneration", 0) >= meta.get("generation", 0)
    if kind == "DaemonSet":
        desired, updated = status.get("desiredNumberScheduled", 0), status.get("updatedNumberScheduled", 0)
        available = status.get("numberAvailable", 0)
        done = current and updated == desired and available == desired
    else:
        desired, updated = spec.get("replicas", 1), status.get("updatedReplicas", 0)
        available = status.get("availableReplicas", status.get("readyReplicas", 0))
        total = status.get("replicas", 0)
        done = current and updated == desired and total == desired and available == desired
        if kind == "StatefulSet":
            done = done and status.get("currentRevision") == status.get("updateRevision")
    required = Version.parse_or_none(template_annotations.get(REQUIRES_ANNOTATION))
    return WorkloadView(kind, meta["name"], required, desired, updated, available, done)


def _failed(status: dict[str, Any]) -> dict[str, Any]:
    """The Job's Failed condition when it is True, else {}."""
    failed = find(status.get("conditions") or [], "Failed")
    return failed if failed and failed.get("status") == "True" else {}

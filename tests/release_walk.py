"""One release of a SchemaMigration walked through every status phase, as a table (pgroll's style):
each row is a step, what the operator observes at it, and what it must decide. test_decide.py
checks the decisions; test_argocd_health.py runs the Argo CD health check on each row's status."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from lockgate.controller.decide import Decision, decide
from lockgate.controller.history_entry import Result
from lockgate.controller.ledger import JobRequest
from lockgate.controller.observed import (
    JobPodView,
    JobView,
    Observed,
    PodView,
    WorkloadView,
    pod_view,
)
from lockgate.controller.spec import (
    GATE_CONDITION,
    GROUP,
    KIND,
    REQUIRES_ANNOTATION,
    VERSION,
    Migration,
    parse_migration,
)
from lockgate.shared.report import parse_report
from lockgate.shared.versions import Version

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=timezone.utc)
UID = "uid-1"


def migration(
    version: str = "3",
    status: dict[str, Any] | None = None,
    generation: int = 1,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> Migration:
    body = {
        "metadata": {
            "name": "shop",
            "namespace": "ns",
            "uid": UID,
            "generation": generation,
            "resourceVersion": "1",
            "annotations": annotations or {},
        },
        "spec": {
            "version": version,
            "image": f"registry/shop-migrations:{version}",
            "database": {"urlFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
            **spec,
        },
        "status": status or {},
    }
    return parse_migration(body)


def job(
    name: str,
    phase: str = "expand",
    version: str = "3",
    state: Result = Result.RUNNING,
    attempt: str = "",
    owner: str = UID,
    deleting: bool = False,
    image: str = "registry/shop-migrations:3",
    uid: str = "",
    suspended: bool = False,
) -> JobView:
    return JobView(
        name,
        phase,
        Version.parse(version),
        attempt,
        image,
        state,
        "2026-11-21T11:59:00Z",
        None if state == Result.RUNNING else "2026-11-21T11:59:30Z",
        True,
        deleting,
        owner,
        uid or f"uid-{name}",
        suspended,
    )


def report(job_name: str, applied: int = 2, exit_code: int = 0, error: dict[str, Any] | None = None) -> JobPodView:
    message = json.dumps(
        {"exit_code": exit_code, "applied_count": applied, "schema_version": "3", "duration_ms": 40, "error": error}
    )
    return JobPodView(f"{job_name}-pod", job_name, "2026-11-21T11:59:29Z", parse_report(message, exit_code))


def pod(name: str, required: str | None = "3", gate: tuple[str, str] | None = None) -> PodView:
    """A gated pod as the operator's index sees it (pod_view parses the annotation)."""
    annotations = {REQUIRES_ANNOTATION: required} if required is not None else {}
    conditions = [{"type": GATE_CONDITION, "status": gate[0], "reason": gate[1]}] if gate else []
    meta = {"name": name, "annotations": annotations, "creationTimestamp": "2026-11-21T11:58:00Z"}
    return pod_view({"metadata": meta, "status": {"conditions": conditions}})


def workload(name: str, required: str = "3", rolled_out: bool = True) -> WorkloadView:
    return WorkloadView(
        "Deployment",
        name,
        Version.parse(required),
        2,
        2 if rolled_out else 1,
        2 if rolled_out else 1,
        rolled_out,
    )


def observe(m: Migration | None, now: datetime = NOW, **parts: Any) -> Observed:
    return Observed(m, "ns", "shop", now=now, **{k: tuple(v) for k, v in parts.items()})


def applied(m: Migration, decision: Decision) -> Migration:
    """The migration as the next reconcile sees it, after the decision's status write."""
    return dataclasses.replace(m, status=decision.status) if decision.status is not None else m


def conditions(decision: Decision) -> dict[str, str]:
    return {c["type"]: c["status"] for c in decision.status["conditions"]}


# the release walk

FAILURE = {"script": "V3__x.sql", "line": 4, "sqlstate": "42P01", "message": 'relation "nope" does not exist'}
RELEASE_SPEC = {"contract": {"delay": "10m", "requireApproval": True}}


@dataclass(frozen=True)
class Step:
    """One row: what changed (spec, annotations, Jobs, workload, time) and what the operator must decide."""

    step: str
    # observed: the spec as of this step; the state of the last Job claimed per phase
    version: str = "3"
    generation: int = 1
    spec: dict[str, Any] = field(default_factory=lambda: RELEASE_SPEC)
    annotate: dict[str, str] = field(default_factory=dict)  # set at this step; they stay
    jobs: dict[str, Result] = field(default_factory=dict)  # phase -> how its Job stands
    rolled_out: bool = False
    pods: tuple[str, ...] = ("2", "3")  # the versions the gated pods require
    minutes: int = 0
    # expected
    phase: str = ""
    expanded: str | None = "3"  # status.appliedVersion
    ready: str = "False"
    stalled: str = "False"
    creates: str | None = None
    events: tuple[str, ...] = ()
    argocd: str = "Progressing"


RELEASE = (
    Step(
        "a new SchemaMigration claims its expand Job",
        phase="Expanding",
        expanded=None,
        creates="expand",
        events=("JobCreated",),
    ),
    Step("the expand Job runs", jobs={"expand": Result.RUNNING}, phase="Expanding", expanded=None),
    Step(
        "the expand Job fails: stalled, nothing retries blindly",
        jobs={"expand": Result.FAILED},
        phase="Failed",
        expanded=None,
        stalled="True",
        events=("ExpandFailed",),
        argocd="Degraded",
    ),
    Step(
        "the retry annotation claims a new expand Job",
        annotate={"lockgate.dev/retry": "1"},
        jobs={"expand": Result.FAILED},
        phase="Expanding",
        expanded=None,
        creates="expand",
        events=("JobCreated",),
    ),
    Step(
        "expand succeeds: the gate opens and background starts beside the rollout",
        jobs={"expand": Result.SUCCEEDED},
        phase="Backfilling",
        ready="True",
        creates="background",
        events=("ExpandSucceeded", "JobCreated"),
        argocd="Healthy",
    ),
    Step(
        "background runs while the pods roll out",
        jobs={"expand": Result.SUCCEEDED, "background": Result.RUNNING},
        phase="Backfilling",
        ready="True",
        argocd="Healthy",
    ),
    Step(
        "paused: the background Job is suspended, contract waits for it",
        annotate={"lockgate.dev/paused": "true"},
        jobs={"expand": Result.SUCCEEDED, "background": Result.RUNNING},
        phase="Paused",
        ready="True",
        events=("Paused",),
        argocd="Healthy",
    ),
    Step(
        "resumed: background goes on after its last batch",
        annotate={"lockgate.dev/paused": "false"},
        jobs={"expand": Result.SUCCEEDED, "background": Result.RUNNING},
        phase="Backfilling",
        ready="True",
        argocd="Healthy",
    ),
    Step(
        "background succeeds: contract waits for the rollout",
        jobs={"expand": Result.SUCCEEDED, "background": Result.SUCCEEDED},
        phase="RollingOut",
        ready="True",
        events=("BackgroundSucceeded",),
        argocd="Healthy",
    ),
    Step(
        "the rollout completes: contract waits for its delay",
        rolled_out=True,
        pods=("3",),
        phase="ContractPending",
        ready="True",
        events=("RolledOut", "ContractPending"),
        argocd="Healthy",
    ),
    Step(
        "the delay has passed: contract waits for approval",
        rolled_out=True,
        pods=("3",),
        minutes=11,
        phase="AwaitingApproval",
        ready="True",
        events=("AwaitingApproval",),
        argocd="Healthy",
    ),
    Step(
        "approved: the contract Job is claimed",
        annotate={"lockgate.dev/approve-contract": "3"},
        rolled_out=True,
        pods=("3",),
        minutes=11,
        phase="Contracting",
        ready="True",
        creates="contract",
        events=("JobCreated",),
        argocd="Healthy",
    ),
    Step(
        "contract succeeds: the release is complete",
        jobs={"contract": Result.SUCCEEDED},
        rolled_out=True,
        pods=("3",),
        minutes=12,
        phase="Complete",
        ready="True",
        events=("ContractSucceeded",),
        argocd="Healthy",
    ),
    Step(
        "spec.version lowered to 2: the newer schema is kept",
        version="2",
        generation=2,
        rolled_out=True,
        minutes=13,
        phase="NewerSchemaKept",
        ready="True",
        events=("NewerSchemaKept",),
        argocd="Healthy",
    ),
    Step(
        "rollback.policy Undo: the undo Job runs with the image that expanded 3",
        version="2",
        generation=3,
        spec=RELEASE_SPEC | {"rollback": {"policy": "Undo"}},
        minutes=14,
        phase="RollingBack",
        creates="undo",
        events=("JobCreated",),
    ),
    Step(
        "undo succeeds: schema 2 is what the database has",
        version="2",
        generation=3,
        spec=RELEASE_SPEC | {"rollback": {"policy": "Undo"}},
        jobs={"undo": Result.SUCCEEDED},
        rolled_out=True,
        pods=("2",),
        minutes=15,
        phase="Complete",
        expanded="2",
        ready="True",
        events=("UndoSucceeded", "RolledOut"),
        argocd="Healthy",
    ),
)


@dataclass(frozen=True)
class Walked:
    row: Step
    decision: Decision
    status: dict[str, Any]  # the status after the row: the decided one, or the unchanged one
    generation: int

    def resource(self) -> dict[str, Any]:
        """The SchemaMigration as Argo CD and kubectl would read it after this step."""
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": "shop", "namespace": "ns", "generation": self.generation},
            "status": self.status,
        }


def walk_release() -> Iterator[Walked]:
    """Decide each row in turn, each from the status the previous row wrote."""
    status: dict[str, Any] = {}
    claims: dict[str, JobRequest] = {}
    annotations: dict[str, str] = {}
    for row in RELEASE:
        annotations |= row.annotate
        m = migration(row.version, status, row.generation, annotations, **row.spec)
        d = decide(_observed(row, m, claims))
        if d.create is not None:
            claims[d.create.phase] = d.create
        status = d.status if d.status is not None else status
        yield Walked(row, d, status, row.generation)


def _observed(row: Step, m: Migration, claims: dict[str, JobRequest]) -> Observed:
    jobs = [_job(claims[phase], state) for phase, state in row.jobs.items()]
    pods = [report(j.name, exit_code=1, error=FAILURE) if j.state == Result.FAILED else report(j.name) for j in jobs]
    return observe(
        m,
        now=NOW + timedelta(minutes=row.minutes),
        jobs=jobs,
        job_pods=[p for p, j in zip(pods, jobs, strict=True) if j.state != Result.RUNNING],
        workloads=[workload("web", rolled_out=row.rolled_out)],
        pods=[pod(f"web-{i}", required) for i, required in enumerate(row.pods)],
    )


def _job(claim: JobRequest, state: Result) -> JobView:
    return job(claim.name, claim.phase, str(claim.version), state, claim.attempt, image=claim.image)

"""What Helm 4 --wait, Flux and kpt (kstatus) and Argo CD (health.lua in Argo CD's engine) read from
the statuses decide() writes at each phase of a release, and from objects the operator never wrote;
computed by the real libraries in hack/health, no cluster."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockgate.controller.decide import Decision, decide
from lockgate.controller.history_entry import Result
from tests.health_support import argocd_health, kstatus, kstatus_all
from tests.release_walk import walk_release
from tests.unit.test_decide import (
    applied,
    expanded,
    job,
    migration,
    observe,
    report,
    workload,
)

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "lockgate.dev_schemamigrations.yaml"
TESTDATA = Path(__file__).parent / "testdata" / "argocd"


def as_object(decision: Decision, generation: int = 1) -> dict[str, Any]:
    assert decision.status is not None
    return {
        "apiVersion": "lockgate.dev/v1alpha1",
        "kind": "SchemaMigration",
        "metadata": {"name": "shop", "namespace": "ns", "generation": generation},
        "status": decision.status,
    }


def failed_expand() -> Decision:
    first = decide(observe(migration()))
    assert first.create is not None
    failure = report(first.create.name, applied=0, exit_code=1, error={"message": "relation nope does not exist"})
    failed_job = job(first.create.name, state=Result.FAILED, attempt=first.create.attempt)
    return decide(observe(applied(migration(), first), jobs=[failed_job], job_pods=[failure]))


FORBIDDEN = (
    '403 Forbidden: jobs.batch is forbidden: User "system:serviceaccount:x:lockgate" cannot create resource "jobs"'
)
PHASES = {
    "expanding": (lambda: decide(observe(migration())), "InProgress", "Progressing"),
    "operator error": (
        lambda: decide(dataclasses.replace(observe(migration()), error=FORBIDDEN)),
        "Failed",
        "Degraded",
    ),
    "failed": (failed_expand, "Failed", "Degraded"),
    "rolling out": (
        lambda: decide(observe(expanded(background="3"), workloads=[workload("web", rolled_out=False)])),
        "Current",
        "Healthy",
    ),
    "backfilling": (lambda: decide(observe(expanded(), workloads=[workload("web")])), "Current", "Healthy"),
    "contract pending": (
        lambda: decide(observe(expanded(background="3", contract={"delay": "10m"}))),
        "Current",
        "Healthy",
    ),
    "complete": (lambda: decide(observe(expanded(background="3", contracted="3"))), "Current", "Healthy"),
    "lowered version": (
        lambda: decide(observe(migration("2", {"appliedVersion": "3", "history": []}))),
        "Current",
        "Healthy",
    ),
}


STATUS_PHASE = {
    "expanding": "Expanding",
    "operator error": "Expanding",
    "failed": "Failed",
    "rolling out": "RollingOut",
    "backfilling": "Backfilling",
    "contract pending": "ContractPending",
    "complete": "Complete",
    "lowered version": "NewerSchemaKept",
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_each_phase_reads_the_same_to_kstatus_and_argo_cd(phase: str) -> None:
    make, want_kstatus, want_argo = PHASES[phase]
    obj = as_object(make())
    assert obj["status"]["phase"] == STATUS_PHASE[phase]
    assert (kstatus(obj)[0], argocd_health(obj)[0]) == (want_kstatus, want_argo), obj["status"]["conditions"]


def test_an_operator_error_fails_fast_with_the_operators_message() -> None:
    obj = as_object(PHASES["operator error"][0]())
    assert kstatus(obj) == ("Failed", f"the operator cannot act: {FORBIDDEN}")
    assert argocd_health(obj) == ("Degraded", f"the operator cannot act: {FORBIDDEN}")


def test_a_spec_change_reads_in_progress_until_the_operator_writes_its_generation() -> None:
    obj = as_object(PHASES["complete"][0](), generation=2)
    assert kstatus(obj) == ("InProgress", "SchemaMigration generation is 2, but latest observed generation is 1")


def test_a_fresh_object_reads_in_progress_only_with_the_crds_status_default() -> None:
    fresh = yaml.safe_load((TESTDATA / "missing_status.yaml").read_text())
    schema = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    defaulted = {**fresh, "status": schema["properties"]["status"]["default"]}
    assert kstatus(fresh)[0] == "Current"  # why the default exists: kstatus would call it done
    assert kstatus(defaulted) == ("InProgress", "SchemaMigration generation is 1, but latest observed generation is 0")
    assert argocd_health(defaulted)[0] == "Progressing"


def test_objects_the_operator_never_wrote() -> None:
    names = ["degraded_stalled.yaml", "healthy_while_contract_pending.yaml", "progressing_rolling_back.yaml"]
    objects = [yaml.safe_load((TESTDATA / name).read_text()) for name in names]
    assert [verdict for verdict, _ in kstatus_all(objects)] == ["Failed", "Current", "InProgress"]


# Argo CD and kstatus name the same three states; a client must never read one the other does not.
KSTATUS_OF_ARGOCD = {"Healthy": "Current", "Progressing": "InProgress", "Degraded": "Failed"}


def test_kstatus_agrees_with_argocd_at_every_step_of_the_release_walk() -> None:
    """The release walk (tests/release_walk.py) that test_decide and test_argocd_health read, through kstatus."""
    walked = list(walk_release())
    verdicts = kstatus_all([w.resource() for w in walked])
    for step, (status, message) in zip(walked, verdicts, strict=True):
        assert status == KSTATUS_OF_ARGOCD[step.row.argocd], f"{step.row.step}: {status} ({message})"
        if status == "Failed":  # Helm 4 and Flux print this message: the Stalled one
            stalled = next(c for c in step.status["conditions"] if c["type"] == "Stalled")
            assert stalled["message"] in message, step.row.step

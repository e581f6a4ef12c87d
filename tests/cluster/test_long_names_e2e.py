"""The longest names Kubernetes allows, end to end on the real control plane: a SchemaMigration
named with 253 characters and a 63-character version get Jobs whose names and labels fit, and
every result is recorded. The phases run a stand-in command: this is about names, not SQL."""

from __future__ import annotations

import re
from typing import Any

from devcluster.kube import Kube
from lockgate.controller.spec import OWNER_ANNOTATION
from tests.operator_fixtures import Migrations

NAME = ".".join(["a" * 63] * 3) + "." + "b" * 61  # 253 characters, a valid DNS subdomain
VERSION = ".".join(["1"] * 32)[:63].rstrip(".")  # 63 characters
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
STAND_IN = {"command": ["python", "-c", "print('migrated')"]}


def test_a_253_character_name_and_a_63_character_version_get_jobs_that_fit(
    kube: Kube, namespace: str, migrations: Migrations, run_operator: Any
) -> None:
    assert (len(NAME), len(VERSION)) == (253, 63)
    run_operator()
    scripts = migrations.scripts("scripts", {"V1__noop.sql": "SELECT 1;"})
    migrations.create(NAME, VERSION, scripts, expand=STAND_IN, background=STAND_IN, contract=STAND_IN)
    done = migrations.wait_condition(NAME, "Contracted", timeout=120)
    assert done["status"]["phase"] == "Complete" and done["status"]["appliedVersion"] == VERSION
    history = {e["phase"]: (e["job"], e["result"]) for e in done["status"]["history"]}
    assert {phase: result for phase, (_, result) in history.items()} == {
        "expand": "Succeeded",
        "background": "Succeeded",
        "contract": "Succeeded",
    }
    reasons = {e.reason for e in migrations.events(NAME)}
    assert {"JobCreated", "ExpandSucceeded", "BackgroundSucceeded"} <= reasons, reasons  # Events name it too
    jobs = migrations.jobs(NAME)
    assert sorted(j.metadata.name for j in jobs) == sorted(job for job, _ in history.values())
    for job in jobs:
        assert DNS_LABEL.fullmatch(job.metadata.name), job.metadata.name
        assert job.metadata.annotations[OWNER_ANNOTATION] == NAME
        pods = kube.core.list_namespaced_pod(namespace, label_selector=f"job-name={job.metadata.name}").items
        assert pods, f"no pod of Job {job.metadata.name} carries its job-name label"
        for pod in pods:
            assert all(LABEL_VALUE.fullmatch(v) and len(v) <= 63 for v in pod.metadata.labels.values())
            assert pod.metadata.annotations[OWNER_ANNOTATION] == NAME

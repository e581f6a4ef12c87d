"""Many tenants on the real node: one SchemaMigration over four schemas is one Indexed Job; the
tenant whose script fails is named with the runner's cause while the others finish, the gate stays
closed, `lockgate status --targets` shows each tenant's state, and fixing the cause and retrying
brings the last tenant up without applying anything twice; a tenant added later catches up on its own.
Canary first: a failing canary is named and nothing else runs; fixed and retried, the rest wait for
the canary approval, then run.
A database per tenant: the pods get the tenants' Secrets only, and a missing one fails its tenant;
Secrets picked by label, one labelled later becoming a new target; a canary picked by label.
Several tenants per pod: the failing one is named and the next one of its pod still applied."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from devcluster.kube import Kube
from devcluster.postgres import in_cluster_url
from devcluster.workloads import condition
from lockgate.controller.spec import GROUP, PLURAL, VERSION
from tests.operator_fixtures import Migrations
from tests.runner_support import history, query
from tests.tenants_support import create_over_databases, phase_is, tenant_databases, tenant_secret

pytestmark = pytest.mark.timeout(600, func_only=True)
TENANTS = ["tenant_a", "tenant_b", "tenant_c", "tenant_d"]
SCRIPTS = {"V1__items.sql": "CREATE TABLE items (id int PRIMARY KEY, tenant text NOT NULL DEFAULT current_schema());"}
ONLY_EXPAND = {"backoffLimit": 0, "background": {"enabled": False}, "contract": {"enabled": False}}
CAUSE = 'V1__items.sql line 1: [42P07] relation "items" already exists'


def lockgate_status(cluster: Any, namespace: str, *args: str) -> Any:
    """`lockgate status` as a person runs it, with the test's kubeconfig: its JSON, or its lines."""
    ran = subprocess.run(
        [sys.executable, "-m", "lockgate", "status", "-n", namespace, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout) if "--json" in args else ran.stdout.splitlines()


def test_a_failing_tenant_is_named_the_others_finish_the_gate_stays_closed_and_a_retry_fixes_it(
    kube: Kube, namespace: str, migrations: Migrations, run_operator: Any, database_url: str, cluster: Any
) -> None:
    for tenant in TENANTS:
        query(database_url, f"CREATE SCHEMA {tenant}")
    query(database_url, "CREATE TABLE tenant_c.items (id int)")  # V1 collides there, and only there
    run_operator()
    migrations.create(
        "tenants",
        "1",
        migrations.scripts("tenants-r1", SCRIPTS),
        targets={"schemas": TENANTS, "maxParallel": 2},
        backoffLimit=0,
        background={"enabled": False},
        contract={"enabled": False},
    )
    failed = migrations.wait("tenants", phase_is("Failed"), timeout=240)
    status = failed["status"]
    assert "appliedVersion" not in status and condition(failed, "Ready")["status"] == "False"
    assert status["targets"]["failed"] == [{"phase": "expand", "target": "tenant_c", "error": CAUSE}]
    counts = status["targets"]["phases"]["expand"]
    assert (counts["succeeded"], counts["failed"], counts["running"], counts["pending"]) == (3, 1, 0, 0)
    assert status["targets"]["summary"] == "3/4 expand, 1 failed"
    assert f"1 of 4 targets failed: tenant_c: {CAUSE}" in condition(failed, "Stalled")["message"]
    for tenant in ("tenant_a", "tenant_b", "tenant_d"):  # the others finished, each in its own schema
        assert query(database_url, f"SELECT tenant FROM {tenant}.items") == []
        assert [row[2] for row in history(database_url, f"{tenant}.lockgate_schema_history")] == ["V1__items.sql"]
    [job] = migrations.jobs("tenants")
    assert (job.spec.completion_mode, job.spec.completions, job.spec.parallelism) == ("Indexed", 4, 2)
    detail = lockgate_status(cluster, namespace, "tenants", "--targets", "--json")
    assert {t["target"]: t["phases"]["expand"]["state"] for t in detail["targets"]} == dict(
        tenant_a="succeeded", tenant_b="succeeded", tenant_c="failed", tenant_d="succeeded"
    )
    assert detail["targets"][2]["phases"]["expand"]["error"] == CAUSE
    assert all(t["phases"]["expand"]["seconds"] >= 0 for t in detail["targets"])  # each pod's start to end
    table = lockgate_status(cluster, namespace, "tenants", "--targets")
    assert table[0].split() == ["TARGET", "EXPAND"] and table[3].split()[:2] == ["tenant_c", "failed"]
    assert f"tenant_c (expand): {CAUSE}" in table

    query(database_url, "DROP TABLE tenant_c.items")
    migrations.patch("tenants", {"metadata": {"annotations": {"lockgate.dev/retry": "1"}}})
    done = migrations.wait("tenants", phase_is("Complete"), timeout=240)
    assert done["status"]["appliedVersion"] == "1" and condition(done, "Ready")["status"] == "True"
    assert done["status"]["targets"]["summary"] == "4/4 expand" and "failed" not in done["status"]["targets"]
    for tenant in TENANTS:  # tenant_c now too; the others were not applied a second time
        assert [row[2:] for row in history(database_url, f"{tenant}.lockgate_schema_history")] == [
            ("V1__items.sql", True)
        ]
    assert len(migrations.jobs("tenants")) == 2  # one Job per attempt: the failed one and the retry
    listing = subprocess.run(
        [str(cluster.kubectl), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, "get", "smig", "tenants"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.splitlines()
    assert "TARGETS" in listing[0].split() and "4/4 expand" in listing[1]

    # A tenant added later catches up on its own; the gate stays open for the pods already serving.
    query(database_url, "CREATE SCHEMA tenant_e")
    migrations.patch("tenants", {"spec": {"targets": {"schemas": [*TENANTS, "tenant_e"]}}})
    caught_up = migrations.wait(
        "tenants", lambda b: (b.get("status") or {}).get("targets", {}).get("summary") == "5/5 expand", timeout=240
    )
    assert caught_up["status"]["appliedVersion"] == "1" and condition(caught_up, "Ready")["status"] == "True"
    for tenant in [*TENANTS, "tenant_e"]:
        assert [row[2] for row in history(database_url, f"{tenant}.lockgate_schema_history")] == ["V1__items.sql"]


def test_a_failing_canary_stops_the_rest_and_once_fixed_the_rest_wait_for_the_approval(
    namespace: str, migrations: Migrations, run_operator: Any, database_url: str
) -> None:
    for tenant in TENANTS:
        query(database_url, f"CREATE SCHEMA {tenant}")
    query(database_url, "CREATE TABLE tenant_a.items (id int)")  # V1 collides on the canary
    run_operator()
    migrations.create(
        "canary",
        "1",
        migrations.scripts("canary-r1", SCRIPTS),
        targets={"schemas": TENANTS, "canary": {"count": 1, "requireApproval": True}},
        backoffLimit=0,
        background={"enabled": False},
        contract={"enabled": False},
    )
    failed = migrations.wait("canary", phase_is("Failed"), timeout=240)
    assert failed["status"]["targets"]["failed"] == [{"phase": "expand", "target": "tenant_a", "error": CAUSE}]
    stalled = condition(failed, "Stalled")["message"]
    assert stalled.startswith("expand canary Job") and "the other targets wait for the canaries" in stalled
    [job] = migrations.jobs("canary")
    assert (job.metadata.labels["lockgate.dev/wave"], job.spec.completions) == ("canary", 1)
    untouched = [(None,)] * 3  # nothing ran on the others: no history table there
    assert [query(database_url, f"SELECT to_regclass('{t}.lockgate_schema_history')")[0] for t in TENANTS[1:]] == (
        untouched
    )

    query(database_url, "DROP TABLE tenant_a.items")
    migrations.patch("canary", {"metadata": {"annotations": {"lockgate.dev/retry": "1"}}})
    held = migrations.wait("canary", phase_is("AwaitingCanaryApproval"), timeout=240)
    reconciling = condition(held, "Reconciling")
    assert (reconciling["status"], reconciling["reason"]) == ("True", "AwaitingCanaryApproval")
    assert "lockgate.dev/approve-canary=1" in reconciling["message"] and "appliedVersion" not in held["status"]
    assert [row[2] for row in history(database_url, "tenant_a.lockgate_schema_history")] == ["V1__items.sql"]
    assert [query(database_url, f"SELECT to_regclass('{t}.lockgate_schema_history')")[0] for t in TENANTS[1:]] == (
        untouched
    )
    assert held["status"]["targets"]["summary"] == "1/4 expand"

    migrations.patch("canary", {"metadata": {"annotations": {"lockgate.dev/approve-canary": "1"}}})
    done = migrations.wait("canary", phase_is("Complete"), timeout=240)
    assert done["status"]["appliedVersion"] == "1" and done["status"]["targets"]["summary"] == "4/4 expand"
    for tenant in TENANTS:
        assert [row[2:] for row in history(database_url, f"{tenant}.lockgate_schema_history")] == [
            ("V1__items.sql", True)
        ]
    waves = sorted((j.metadata.labels["lockgate.dev/wave"], j.spec.completions) for j in migrations.jobs("canary"))
    assert waves == [("canary", 1), ("canary", 1), ("rest", 3)]  # the failed canary, its retry, the rest


def test_a_database_per_tenant_runs_with_only_its_secret_and_a_missing_secret_fails_its_tenant_only(
    kube: Kube, namespace: str, migrations: Migrations, run_operator: Any, postgres: Any, cluster: Any
) -> None:
    urls = tenant_databases(postgres, namespace, "one", "two")
    tenant_secret(kube, namespace, "tenant-one-db", urls["tenant-one-db"], cluster.node_ip)
    run_operator()
    create_over_databases(
        kube,
        migrations,
        "dbs",
        "1",
        migrations.scripts("dbs-r1", SCRIPTS),
        list(urls),
        backoffLimit=0,
        background={"enabled": False},
        contract={"enabled": False},
    )
    failed = migrations.wait("dbs", phase_is("Failed"), timeout=240)
    named = failed["status"]["targets"]["failed"]
    assert [f["target"] for f in named] == ["tenant-two-db"], named
    assert "the Secret tenant-two-db or its URL key does not exist" in named[0]["error"]
    assert [row[2] for row in history(urls["tenant-one-db"])] == ["V1__items.sql"]
    [job] = migrations.jobs("dbs")
    pod_spec = job.spec.template.spec
    assert "LOCKGATE_DATABASE_URL" not in {e.name for e in pod_spec.containers[0].env}
    [volume] = [v for v in pod_spec.volumes if v.projected]
    assert [source.secret.name for source in volume.projected.sources] == list(urls)

    tenant_secret(kube, namespace, "tenant-two-db", urls["tenant-two-db"], cluster.node_ip)
    migrations.patch("dbs", {"metadata": {"annotations": {"lockgate.dev/retry": "1"}}})
    done = migrations.wait("dbs", phase_is("Complete"), timeout=240)
    assert done["status"]["appliedVersion"] == "1" and done["status"]["targets"]["summary"] == "2/2 expand"
    for url in urls.values():
        assert [row[2] for row in history(url)] == ["V1__items.sql"]


def test_tenants_secrets_picked_by_label_and_a_secret_labelled_later_catches_up(
    kube: Kube, namespace: str, migrations: Migrations, run_operator: Any, postgres: Any, cluster: Any
) -> None:
    suffix = namespace[-6:].replace("-", "_")
    urls = {f"tenant-{n}-db": postgres.create_database(f"s_{n}_{suffix}") for n in ("one", "two", "three")}
    labels = {"lockgate.dev/tenant": "yes"}

    def tenant_secret(name: str, labelled: bool = True) -> None:
        url = in_cluster_url(urls[name], cluster.node_ip)
        meta = {"name": name, "labels": labels if labelled else {"lockgate.dev/tenant": "no"}}
        kube.core.create_namespaced_secret(namespace, {"metadata": meta, "stringData": {"url": url}})

    tenant_secret("tenant-one-db")
    tenant_secret("tenant-two-db")
    tenant_secret("tenant-three-db", labelled=False)
    run_operator()
    body = migrations.body(
        "sel",
        "1",
        migrations.scripts("sel-r1", SCRIPTS),
        targets={"databases": {"selector": {"matchLabels": labels}}},
        **ONLY_EXPAND,
    )
    del body["spec"]["database"]
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    done = migrations.wait("sel", phase_is("Complete"), timeout=240)
    assert done["status"]["targets"]["summary"] == "2/2 expand"
    [job] = migrations.jobs("sel")
    [volume] = [v for v in job.spec.template.spec.volumes if v.projected]
    # the labelled ones only, by name
    assert [s.secret.name for s in volume.projected.sources] == ["tenant-one-db", "tenant-two-db"]

    # Labelled later: a new target, caught up with no edit of the SchemaMigration (Secrets are listed
    # again at least every 30 s), the two others applying nothing twice.
    kube.core.patch_namespaced_secret("tenant-three-db", namespace, {"metadata": {"labels": labels}})
    caught_up = migrations.wait(
        "sel", lambda b: (b.get("status") or {}).get("targets", {}).get("summary") == "3/3 expand", timeout=240
    )
    assert caught_up["metadata"]["generation"] == 1 and condition(caught_up, "Ready")["status"] == "True"
    for url in urls.values():
        assert [row[2] for row in history(url)] == ["V1__items.sql"]


def test_a_canary_picked_by_label_runs_first_and_alone(
    kube: Kube, namespace: str, migrations: Migrations, run_operator: Any, postgres: Any, cluster: Any
) -> None:
    urls = tenant_databases(postgres, namespace, "one", "two", "three")
    for name, url in urls.items():
        tenant_secret(kube, namespace, name, url, cluster.node_ip)
    canary = {"lockgate.dev/canary": "yes"}
    kube.core.patch_namespaced_secret("tenant-two-db", namespace, {"metadata": {"labels": canary}})
    run_operator()
    body = migrations.body(
        "bylabel",
        "1",
        migrations.scripts("bylabel-r1", SCRIPTS),
        targets={"databases": {"secrets": list(urls)}, "canary": {"selector": {"matchLabels": canary}}},
        **ONLY_EXPAND,
    )
    del body["spec"]["database"]
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    done = migrations.wait("bylabel", phase_is("Complete"), timeout=240)
    assert done["status"]["targets"]["summary"] == "3/3 expand" and done["status"]["targets"]["canary"] == 1

    def listed(job: Any) -> str:
        return next(e.value for e in job.spec.template.spec.containers[0].env if e.name == "LOCKGATE_TARGETS")

    jobs = {j.metadata.labels["lockgate.dev/wave"]: j for j in migrations.jobs("bylabel")}
    assert {wave: listed(job) for wave, job in jobs.items()} == {
        "canary": "tenant-two-db",
        "rest": "tenant-one-db,tenant-three-db",
    }
    # alone: the rest's Job was made only once the canary's completed
    assert jobs["rest"].metadata.creation_timestamp >= jobs["canary"].status.completion_time
    for url in urls.values():
        assert [row[2] for row in history(url)] == ["V1__items.sql"]


def test_several_tenants_per_pod_the_failing_one_named_the_rest_of_its_pod_applied(
    namespace: str, migrations: Migrations, run_operator: Any, database_url: str
) -> None:
    tenants = [*TENANTS, "tenant_e"]
    for tenant in tenants:
        query(database_url, f"CREATE SCHEMA {tenant}")
    query(database_url, "CREATE TABLE tenant_c.items (id int)")  # index 1 holds tenant_c and tenant_d
    run_operator()
    migrations.create(
        "chunks",
        "1",
        migrations.scripts("chunks-r1", SCRIPTS),
        targets={"schemas": tenants, "perPod": 2},
        backoffLimit=0,
        background={"enabled": False},
        contract={"enabled": False},
    )
    failed = migrations.wait("chunks", phase_is("Failed"), timeout=240)
    targets = failed["status"]["targets"]
    assert targets["failed"] == [{"phase": "expand", "target": "tenant_c", "error": CAUSE}]
    assert targets["summary"] == "4/5 expand, 1 failed"
    for tenant in ("tenant_a", "tenant_b", "tenant_d", "tenant_e"):  # tenant_d after tenant_c in its pod
        assert [row[2] for row in history(database_url, f"{tenant}.lockgate_schema_history")] == ["V1__items.sql"]
    [job] = migrations.jobs("chunks")
    assert (job.spec.completions, job.status.failed_indexes) == (3, "1")

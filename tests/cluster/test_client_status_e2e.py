"""What kstatus (Helm 4 --wait, Flux), Argo CD and kubectl read from live SchemaMigrations on the
real API server at each phase of a release, and `helm install --wait` (Helm 4) of examples/app-chart."""

from __future__ import annotations

import subprocess
from typing import Any

from devcluster.workloads import condition, gated_deployment
from lockgate.controller.spec import APPROVE_ANNOTATION
from tests.chart_support import install_app
from tests.health_support import argocd_health, kstatus
from tests.operator_fixtures import Migrations

SLOW_RELEASE = {
    "V1__users.sql": "CREATE TABLE users (id bigint PRIMARY KEY);\nSELECT pg_sleep(3);",
    "A1__seed.sql": "INSERT INTO users VALUES (1) ON CONFLICT DO NOTHING;\nSELECT pg_sleep(3);",
    "C1__noop.sql": "SELECT 1;",
}
BROKEN = {"V1__needs_table.sql": "INSERT INTO audit_log VALUES (1);"}


def verdicts(body: dict[str, Any]) -> tuple[str, str]:
    return kstatus(body)[0], argocd_health(body)[0]


def at_phase(migrations: Migrations, name: str, phase: str) -> dict[str, Any]:
    return migrations.wait(name, lambda b: (b.get("status") or {}).get("phase") == phase)


def kubectl(cluster: Any, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(cluster.kubectl), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_each_phase_of_a_release_reads_right_on_the_live_object(
    kube: Any, namespace: str, migrations: Migrations, run_operator: Any, cluster: Any
) -> None:
    # Contract waits for an approval, so ContractPending lasts until the test has read it.
    migrations.create("shop", "1", migrations.scripts("r1", SLOW_RELEASE), contract={"requireApproval": True})
    fresh = migrations.get("shop")
    assert fresh["status"] == {"observedGeneration": 0}  # the CRD's default, served by the API server
    assert verdicts(fresh) == ("InProgress", "Progressing")
    run_operator()
    kube.apps.create_namespaced_deployment(namespace, gated_deployment("web", "shop", "1"))
    assert verdicts(at_phase(migrations, "shop", "Expanding")) == ("InProgress", "Progressing")
    assert verdicts(at_phase(migrations, "shop", "Backfilling")) == ("Current", "Healthy")
    rolled_out = migrations.wait_condition("shop", "RolledOut")
    assert verdicts(rolled_out) == ("Current", "Healthy")
    assert verdicts(at_phase(migrations, "shop", "AwaitingApproval")) == ("Current", "Healthy")  # contract pending
    migrations.patch("shop", {"metadata": {"annotations": {APPROVE_ANNOTATION: "1"}}})
    waited = kubectl(
        cluster, namespace, "wait", "--for=jsonpath={.status.phase}=Complete", "smig/shop", "--timeout=60s"
    )
    assert waited.returncode == 0 and "condition met" in waited.stdout, waited.stderr
    assert verdicts(migrations.get("shop")) == ("Current", "Healthy")
    wide = kubectl(cluster, namespace, "get", "smig", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[:11] == [
        "NAME",
        "TARGET",
        "APPLIED",
        "PHASE",
        "READY",
        "PROGRESS",
        "TARGETS",
        "AGE",
        "WAITING",
        "BACKGROUND",
        "CONTRACTED",
    ]
    # PROGRESS is blank once background is done, TARGETS for one database: the row's words skip them
    assert wide[1].split()[:5] == ["shop", "1", "1", "Complete", "True"] and wide[1].split()[6:9] == ["0", "1", "1"]
    assert "Contracted" in wide[1] and "schema 1 is expanded" in wide[1]
    migrations.patch("shop", {"spec": {"version": "0"}})
    assert verdicts(at_phase(migrations, "shop", "NewerSchemaKept")) == ("Current", "Healthy")


def test_a_failed_migration_reads_failed_with_the_runners_error(
    migrations: Migrations, run_operator: Any, cluster: Any, namespace: str
) -> None:
    run_operator()
    migrations.create("broken", "1", migrations.scripts("broken", BROKEN), backoffLimit=0)
    stalled = migrations.wait_condition("broken", "Stalled")
    status, message = kstatus(stalled)
    assert status == "Failed" and "V1__needs_table.sql line 1: [42P01]" in message
    assert argocd_health(stalled) == ("Degraded", condition(stalled, "Stalled")["message"])
    waited = kubectl(cluster, namespace, "wait", "--for=condition=Ready", "smig/broken", "--timeout=3s")
    assert waited.returncode != 0  # kubectl wait has no notion of failure: it times out


def test_helm_4_install_wait_returns_once_the_schema_is_ready_and_the_app_rolled_out(
    kube: Any, migrations: Migrations, run_operator: Any, cluster: Any, namespace: str
) -> None:
    run_operator()
    result, seconds = install_app(
        cluster, namespace, "app", migrations.scripts("app-r1", SLOW_RELEASE), migrations.image
    )
    assert result.returncode == 0, result.stderr
    assert condition(migrations.get("app"), "Ready")["status"] == "True"
    deployment = kube.apps.read_namespaced_deployment("app", namespace)
    assert deployment.status.ready_replicas == deployment.spec.replicas == 2
    print(f"helm install --wait of a passing release: {seconds:.1f}s")


def test_helm_4_install_wait_fails_fast_with_the_migrations_error(
    migrations: Migrations, run_operator: Any, cluster: Any, namespace: str
) -> None:
    run_operator()
    result, seconds = install_app(
        cluster, namespace, "app", migrations.scripts("app-broken", BROKEN), migrations.image,
        **{"app.progressDeadlineSeconds": "30"},
    )  # fmt: skip
    assert result.returncode != 0
    assert "SchemaMigration" in result.stderr and "[42P01]" in result.stderr, result.stderr
    assert seconds < 120, f"helm --wait took {seconds:.0f}s of its 300s timeout"
    print(f"helm install --wait of a failing migration: failed after {seconds:.1f}s (timeout 300s)")

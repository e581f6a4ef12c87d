"""The operator end to end on the real control plane: real Jobs run `lockgate migrate`
against the real PostgreSQL; a gated Deployment rolls out through the schema gate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

from kubernetes.client.rest import ApiException
from prometheus_client.parser import text_string_to_metric_families

from devcluster.kube import Kube, watch_until
from devcluster.workloads import condition, gated_deployment, require_version
from lockgate.controller.spec import GATE_CONDITION, GROUP, PLURAL, VERSION
from tests.operator_fixtures import JobRecorder, Migrations, Operator, rolled_out
from tests.runner_support import history, query

RELEASE_1 = {
    "V1__users.sql": "CREATE TABLE users (id bigint PRIMARY KEY, name text);",
    "A1__seed.sql": "INSERT INTO users VALUES (1, 'ada') ON CONFLICT DO NOTHING;",
    "C1__noop.sql": "SELECT 1;",
}
RELEASE_2 = RELEASE_1 | {
    "V2__email.sql": "ALTER TABLE users ADD COLUMN email text;\nSELECT pg_sleep(3);",
    "A2__backfill.sql": "UPDATE users SET email = name || '@example.com';",
    "C2__drop_name.sql": "ALTER TABLE users DROP COLUMN name;",
}


def gate_of(pod: Any) -> Any:
    return next((c for c in pod.status.conditions or [] if c.type == GATE_CONDITION), None)


def pods(kube: Kube, namespace: str, app: str) -> list[Any]:
    return kube.core.list_namespaced_pod(namespace, label_selector=f"app={app}").items


def sample(operator: Operator, metric: str, labels: dict[str, str]) -> float | None:
    """One series' value on the operator's /metrics, or None without it."""
    for family in text_string_to_metric_families(operator.metrics()):
        for found in family.samples:
            if found.name == metric and found.labels == labels:
                return float(found.value)
    return None


def metric_until(operator: Operator, metric: str, labels: dict[str, str], predicate: Any) -> float | None:
    """The series' value once `predicate` holds for it: the gauges follow the status write at once,
    but a test that sees the status may read /metrics a moment before."""
    deadline = time.monotonic() + 10
    while not predicate(value := sample(operator, metric, labels)):
        assert time.monotonic() < deadline, f"{metric}{labels} is {value}"
        time.sleep(0.2)
    return value


def qualified(image: str) -> str:
    """The same image under its fully qualified name (`lockgate:dev` is `docker.io/library/lockgate:dev`)."""
    first = image.split("/")[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return image  # already names its registry
    return f"docker.io/{image}" if "/" in image else f"docker.io/library/{image}"


def test_a_new_migration_runs_each_phase_once_and_records_the_runner_summary(
    migrations: Migrations, run_operator: Any, job_recorder: JobRecorder, database_url: str
) -> None:
    run_operator()
    migrations.create("shop", "1", migrations.scripts("shop-r1", RELEASE_1))
    ready = migrations.wait_condition("shop", "Ready")
    expand = [e for e in ready["status"]["history"] if e["phase"] == "expand"]
    assert [(e["result"], e["applied"], e["schemaVersion"]) for e in expand] == [("Succeeded", 1, "1")]
    assert (
        ready["status"]["appliedVersion"] == "1"
        and ready["status"]["observedGeneration"] == ready["metadata"]["generation"]
    )
    done = migrations.wait_condition("shop", "Contracted")  # no gated workloads: the rollout is trivially complete
    assert done["status"]["phase"] == "Complete"
    assert [(r[1], r[2]) for r in history(database_url)] == [
        ("expand", "V1__users.sql"),
        ("background", "A1__seed.sql"),
        ("contract", "C1__noop.sql"),
    ]
    assert {k: len(v) for k, v in job_recorder.per_phase().items()} == {
        ("shop", "expand", "1"): 1,
        ("shop", "background", "1"): 1,
        ("shop", "contract", "1"): 1,
    }
    for reason in ("JobCreated", "ExpandSucceeded", "BackgroundSucceeded", "RolledOut", "ContractSucceeded"):
        migrations.wait_event("shop", reason)
    job = migrations.jobs("shop")[0]
    assert job.metadata.owner_references[0].kind == "SchemaMigration"


def test_the_gate_holds_new_pods_until_their_schema_is_expanded_while_old_pods_serve(
    kube: Kube, namespace: str, migrations: Migrations, run_operator: Any
) -> None:
    operator = run_operator()
    migrations.create("shop", "1", migrations.scripts("shop-r1", RELEASE_1))
    migrations.wait_condition("shop", "Ready")
    kube.apps.create_namespaced_deployment(namespace, gated_deployment("web", "shop", "1"))
    rolled_out(kube, namespace, "web")  # pods requiring the applied version pass at once
    assert all(gate_of(p).status == "True" for p in pods(kube, namespace, "web"))

    # Release 2 reaches the Deployment before its schema exists.
    require_version(kube, namespace, "web", "2")
    held = watch_until(
        kube.core.list_namespaced_pod,
        lambda p: (p.metadata.annotations or {}).get("lockgate.dev/requires-version") == "2" and gate_of(p) is not None,
        namespace=namespace,
        label_selector="app=web",
    )
    assert (
        gate_of(held).status == "False"
        and gate_of(held).reason == "WaitingForSchema"
        and "SchemaMigration shop" in gate_of(held).message
    )
    shop = {"namespace": namespace, "name": "shop"}
    # The alerts' gauges: how many pods the gate holds, and the oldest one's creation.
    assert metric_until(operator, "lockgate_gate_pods_waiting", shop, lambda v: v and v >= 1)
    since = sample(operator, "lockgate_gate_waiting_since_timestamp_seconds", shop)
    assert since is not None and since <= held.metadata.creation_timestamp.timestamp() and time.time() - since < 120
    time.sleep(2)
    old = [p for p in pods(kube, namespace, "web") if p.metadata.annotations["lockgate.dev/requires-version"] == "1"]
    assert len(old) == 2 and all(c.status == "True" for p in old for c in p.status.conditions if c.type == "Ready")
    deployment = kube.apps.read_namespaced_deployment("web", namespace)
    assert (deployment.status.updated_replicas or 0) < 2 or (deployment.status.replicas or 0) > 2  # the rollout is held

    migrations.patch(
        "shop",
        {"spec": {"version": "2", "migrations": {"configMap": {"name": migrations.scripts("shop-r2", RELEASE_2)}}}},
    )
    rolled_out(kube, namespace, "web")
    final = pods(kube, namespace, "web")
    assert {
        p.metadata.annotations["lockgate.dev/requires-version"] for p in final if not p.metadata.deletion_timestamp
    } == {"2"}
    assert all(gate_of(p).status == "True" for p in final if not p.metadata.deletion_timestamp)
    assert metric_until(operator, "lockgate_gate_pods_waiting", shop, lambda v: v == 0) == 0
    assert sample(operator, "lockgate_gate_waiting_since_timestamp_seconds", shop) is None


def test_background_never_holds_the_gate(kube: Kube, namespace: str, migrations: Migrations, run_operator: Any) -> None:
    run_operator()
    slow = RELEASE_1 | {"A1__seed.sql": "SELECT pg_sleep(8);"}
    migrations.create("shop", "1", migrations.scripts("shop-r1", slow))
    kube.apps.create_namespaced_deployment(namespace, gated_deployment("web", "shop", "1"))
    rolled_out(kube, namespace, "web", timeout=60)
    body = migrations.get("shop")
    assert condition(body, "Ready")["status"] == "True"
    assert body["status"]["phase"] == "Backfilling"  # background still running while the app serves
    assert any(
        j.metadata.labels["lockgate.dev/phase"] == "background" and not j.status.completion_time
        for j in migrations.jobs("shop")
    )
    migrations.wait_condition("shop", "Contracted")


def test_contract_runs_only_after_every_pod_needs_the_new_schema(
    kube: Kube, namespace: str, migrations: Migrations, run_operator: Any, job_recorder: JobRecorder, database_url: str
) -> None:
    run_operator()
    migrations.create("shop", "1", migrations.scripts("shop-r1", RELEASE_1))
    kube.apps.create_namespaced_deployment(namespace, gated_deployment("web", "shop", "1"))
    migrations.wait_condition("shop", "Contracted")
    rolled_out(kube, namespace, "web")
    migrations.patch(
        "shop",
        {
            "spec": {
                "version": "2",
                "contract": {"delay": "2s"},
                "migrations": {"configMap": {"name": migrations.scripts("shop-r2", RELEASE_2)}},
            }
        },
    )
    migrations.wait(
        "shop",
        lambda b: (
            b["status"].get("appliedVersion") == "2"
            and b["status"].get("backgroundVersion") == "2"
            and condition(b, "Ready")["status"] == "True"
        ),
    )
    time.sleep(3)  # longer than contract.delay: only the old pods hold contract back now
    body = migrations.get("shop")
    assert (
        condition(body, "RolledOut")["status"] == "False"
        and "Deployment/web" in condition(body, "RolledOut")["message"]
    )
    assert ("shop", "contract", "2") not in job_recorder.per_phase()

    require_version(kube, namespace, "web", "2")
    deadline = time.monotonic() + 90
    while any(p.metadata.annotations["lockgate.dev/requires-version"] == "1" for p in pods(kube, namespace, "web")):
        assert ("shop", "contract", "2") not in job_recorder.per_phase(), (
            "contract started while a pod still needed schema 1"
        )
        assert time.monotonic() < deadline
        time.sleep(0.2)
    done = migrations.wait_condition("shop", "Contracted")
    rolled = condition(done, "RolledOut")
    assert rolled["status"] == "True"
    contract_entry = next(e for e in done["status"]["history"] if e["phase"] == "contract" and e["version"] == "2")
    delay = _seconds(contract_entry["startTime"]) - _seconds(rolled["lastTransitionTime"])
    assert delay >= 1, f"contract started {delay}s after the rollout, before contract.delay"
    assert query(
        database_url,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'name'",
    ) == [(0,)]


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def test_a_failed_job_stalls_with_the_runner_error_until_retried(
    migrations: Migrations, run_operator: Any, job_recorder: JobRecorder, database_url: str
) -> None:
    operator = run_operator()
    broken = RELEASE_1 | {"V2__needs_table.sql": "INSERT INTO audit_log VALUES (1);"}
    migrations.create("shop", "2", migrations.scripts("shop-broken", broken), backoffLimit=0)
    stalled = migrations.wait_condition("shop", "Stalled")
    assert condition(stalled, "Ready")["status"] == "False"
    assert "V2__needs_table.sql line 1: [42P01]" in condition(stalled, "Stalled")["message"]
    # What LockgateMigrationStalled reads: since when the condition is True, and why.
    failed = {"namespace": migrations.namespace, "name": "shop", "reason": "JobFailed"}
    since = datetime.fromisoformat(condition(stalled, "Stalled")["lastTransitionTime"].replace("Z", "+00:00"))
    stalled_since = "lockgate_migration_stalled_since_timestamp_seconds"
    assert metric_until(operator, stalled_since, failed, lambda v: v is not None) == since.timestamp()
    assert "42P01" in migrations.wait_event("shop", "ExpandFailed").message
    time.sleep(4)
    assert len(job_recorder.per_phase()[("shop", "expand", "2")]) == 1  # nothing retries blindly
    query(database_url, "CREATE TABLE audit_log (id int)")
    migrations.patch("shop", {"metadata": {"annotations": {"lockgate.dev/retry": "fixed-audit-log"}}})
    ready = migrations.wait_condition("shop", "Ready")
    assert condition(ready, "Stalled")["status"] == "False"
    assert len(job_recorder.per_phase()[("shop", "expand", "2")]) == 2
    assert metric_until(operator, stalled_since, failed, lambda v: v is None) is None


def test_exactly_once_through_restarts_two_operators_and_ttl(
    kube: Kube, namespace: str, migrations: Migrations, run_operator: Any, job_recorder: JobRecorder, database_url: str
) -> None:
    first, second = run_operator("operator-a"), run_operator("operator-b")
    names = [f"app{i}" for i in range(4)]
    for name in names:
        files = {
            f"V1__{name}.sql": f"CREATE TABLE {name} (id int); SELECT pg_sleep(1);",
            f"A1__{name}.sql": "SELECT 1;",
            f"C1__{name}.sql": "SELECT 1;",
        }
        migrations.create(
            name,
            "1",
            migrations.scripts(f"{name}-r1", files),
            ttlSecondsAfterFinished=0,
            database={
                "urlFrom": {"secretKeyRef": {"name": migrations.secret, "key": "url"}},
                "historyTable": f"history_{name}",
            },
        )
    time.sleep(1.5)
    first.process.kill()  # mid-flight, no goodbye
    for name in names:  # re-applying the same spec changes nothing
        migrations.patch(name, {"spec": {"version": "1"}})
    third = run_operator("operator-c")
    for name in names:
        migrations.wait_condition(name, "Contracted", timeout=120)
    assert third.process.is_running and second.process.is_running
    for name in names:
        for phase in ("expand", "background", "contract"):
            assert len(job_recorder.per_phase()[(name, phase, "1")]) == 1, (name, phase, job_recorder.per_phase())
        entries = [(e["phase"], e["result"]) for e in migrations.get(name)["status"]["history"]]
        assert entries == [("expand", "Succeeded"), ("background", "Succeeded"), ("contract", "Succeeded")]
        assert [r[1] for r in history(database_url, f"history_{name}")] == ["expand", "background", "contract"]
    wait_jobs_gone = time.monotonic() + 30
    while any(migrations.jobs(n) for n in names) and time.monotonic() < wait_jobs_gone:
        time.sleep(0.5)
    assert not any(migrations.jobs(n) for n in names)  # TTL removed them once their results were recorded


def test_lowering_the_version_starts_nothing_by_default(
    migrations: Migrations, run_operator: Any, job_recorder: JobRecorder
) -> None:
    run_operator()
    migrations.create("shop", "2", migrations.scripts("shop-r2", RELEASE_2))
    migrations.wait_condition("shop", "Contracted")
    jobs_before = dict(job_recorder.created)
    migrations.patch("shop", {"spec": {"version": "1"}})
    kept = migrations.wait(name := "shop", lambda b: b["status"].get("phase") == "NewerSchemaKept")
    assert (
        condition(kept, "Ready")["status"] == "True" and "rollback.policy Never" in condition(kept, "Ready")["message"]
    )
    time.sleep(2)
    assert job_recorder.created.keys() == jobs_before.keys()
    migrations.wait_event(name, "NewerSchemaKept")


def test_undo_runs_only_when_allowed_with_the_newer_versions_image(
    kube: Kube, migrations: Migrations, run_operator: Any, database_url: str
) -> None:
    run_operator()
    # Two spellings of the one image the node has, so the undo Job's image tells which one was used.
    release_1, release_2 = migrations.image, qualified(migrations.image)
    release = {
        "V1__users.sql": "CREATE TABLE users (id int);",
        "V2__email.sql": "ALTER TABLE users ADD COLUMN email text;",
        "U2__email.sql": "ALTER TABLE users DROP COLUMN email;",
    }
    migrations.create(
        "shop",
        "2",
        migrations.scripts("shop-r2", release),
        image=release_2,
        rollback={"policy": "Undo"},
        contract={"enabled": False},
    )
    migrations.wait(name := "shop", lambda b: b.get("status", {}).get("phase") == "Complete")
    migrations.patch(name, {"spec": {"version": "1", "image": release_1}})
    undone = migrations.wait(
        name, lambda b: b["status"].get("appliedVersion") == "1" and condition(b, "Ready")["status"] == "True"
    )
    undo = next(e for e in undone["status"]["history"] if e["phase"] == "undo")
    assert undo["result"] == "Succeeded" and undo["image"] == release_2
    assert query(
        database_url,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'email'",
    ) == [(0,)]


def test_the_database_url_never_leaves_its_secret(
    kube: Kube, namespace: str, migrations: Migrations, run_operator: Any, postgres: Any
) -> None:
    operator = run_operator()
    migrations.create("shop", "2", migrations.scripts("shop-r1", RELEASE_1 | {"V2__fail.sql": "SELECT 1/0;"}))
    migrations.wait_condition("shop", "Stalled")
    password = postgres.password
    status = json.dumps(migrations.get("shop"))
    events = " ".join(f"{e.reason} {e.message}" for e in migrations.events("shop"))
    jobs = json.dumps([kube.api.sanitize_for_serialization(j) for j in migrations.jobs("shop")])
    for text in (status, events, jobs, operator.process.log_tail(10_000)):
        assert password not in text and "postgresql://" not in text
    assert "secretKeyRef" in jobs


def test_deleting_the_migration_removes_its_jobs_and_never_hangs(
    kube: Kube, namespace: str, migrations: Migrations, run_operator: Any
) -> None:
    run_operator()
    migrations.create("shop", "1", migrations.scripts("shop-r1", RELEASE_1))
    migrations.wait_condition("shop", "Contracted")
    assert len(migrations.jobs("shop")) == 3
    kube.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "shop")
    deadline = time.monotonic() + 10
    while any(
        m["metadata"]["name"] == "shop"
        for m in kube.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    ):
        assert time.monotonic() < deadline, "the SchemaMigration hangs in deletion"
        time.sleep(0.2)
    deadline = time.monotonic() + 30
    while migrations.jobs("shop"):
        assert time.monotonic() < deadline, [j.metadata.finalizers for j in migrations.jobs("shop")]
        time.sleep(0.3)


def test_invalid_objects_are_refused_naming_the_field(
    kube: Kube, namespace: str, migrations: Migrations, crd: Any
) -> None:
    cases = [
        ({"version": "v2"}, "spec.version"),
        ({"contract": {"delay": "soon"}}, "spec.contract.delay"),
        ({"rollback": {"policy": "Always"}}, "spec.rollback.policy"),
        ({"expand": {"enabled": False}}, "spec.expand.enabled"),
        ({"env": [{"name": "LOCKGATE_DATABASE_URL", "value": "x"}]}, "spec.env[0].name"),
    ]
    for change, field in cases:
        body = migrations.body("bad", "1", "whatever")
        body["spec"].update(change)
        try:
            kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        except ApiException as exc:
            assert exc.status == 422 and field in exc.body, (field, exc.body)
        else:
            raise AssertionError(f"{change} was accepted")


def waiting_pod(name: str, image: str, version: str, timeout: str) -> dict[str, Any]:
    """An app pod whose init container is `lockgate wait`: the gate for apps that must not even start."""
    return {
        "metadata": {"name": name},
        "spec": {
            "serviceAccountName": "app",
            "restartPolicy": "Never",
            "initContainers": [
                {
                    "name": "wait-for-schema",
                    "image": image,
                    "command": ["lockgate", "wait", "--name", "shop", "--version", version, "--timeout", timeout],
                }
            ],
            "containers": [{"name": "app", "image": image, "command": ["python", "-c", "print('app started')"]}],
        },
    }


def test_lockgate_wait_holds_an_init_container_until_the_schema_is_expanded(
    kube: Kube, namespace: str, migrations: Migrations, run_operator: Any, cluster: Any
) -> None:
    run_operator()
    kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": "app"}})
    rules = [{"apiGroups": ["lockgate.dev"], "resources": ["schemamigrations"], "verbs": ["get", "list", "watch"]}]
    kube.rbac.create_namespaced_role(namespace, {"metadata": {"name": "read-schema"}, "rules": rules})
    kube.rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "app-read-schema"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-schema"},
            "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": namespace}],
        },
    )
    migrations.create("shop", "1", migrations.scripts("shop-r1", RELEASE_1))
    migrations.wait_condition("shop", "Ready")
    kube.core.create_namespaced_pod(namespace, waiting_pod("needs-2", cluster.real_image, "2", "120"))
    kube.core.create_namespaced_pod(namespace, waiting_pod("needs-9", cluster.real_image, "9", "3"))
    time.sleep(4)
    held = kube.core.read_namespaced_pod("needs-2", namespace)
    assert held.status.phase == "Pending" and held.status.init_container_statuses[0].state.running is not None

    migrations.patch(
        "shop",
        {"spec": {"version": "2", "migrations": {"configMap": {"name": migrations.scripts("shop-r2", RELEASE_2)}}}},
    )
    done = watch_until(
        kube.core.list_namespaced_pod,
        lambda p: p.status.phase in ("Succeeded", "Failed"),
        timeout=90,
        namespace=namespace,
        field_selector="metadata.name=needs-2",
    )
    assert done.status.phase == "Succeeded"
    assert done.status.init_container_statuses[0].state.terminated.exit_code == 0
    gave_up = watch_until(
        kube.core.list_namespaced_pod,
        lambda p: p.status.phase == "Failed",
        timeout=60,
        namespace=namespace,
        field_selector="metadata.name=needs-9",
    )
    terminated = gave_up.status.init_container_statuses[0].state.terminated
    assert terminated.exit_code == 1
    assert "timed out after 3s waiting for SchemaMigration" in terminated.message and "required 9" in terminated.message


def test_kubectl_get_wait_and_describe(migrations: Migrations, run_operator: Any, cluster: Any, namespace: str) -> None:
    run_operator()
    migrations.create("shop", "1", migrations.scripts("shop-r1", RELEASE_1))
    kubectl = [str(cluster.kubectl), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace]
    waited = subprocess.run(
        [*kubectl, "wait", "--for=condition=Ready", "smig/shop", "--timeout=90s"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert waited.returncode == 0, waited.stderr
    assert "condition met" in waited.stdout
    migrations.wait_event("shop", "ContractSucceeded")
    table = subprocess.run([*kubectl, "get", "smig"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert table[0].split() == ["NAME", "TARGET", "APPLIED", "PHASE", "READY", "PROGRESS", "TARGETS", "AGE"]
    row = table[1].split()
    assert (
        row[:5] == ["shop", "1", "1", "Complete", "True"] and len(row) == 6
    )  # progress: blank, only while backfilling
    described = subprocess.run(
        [*kubectl, "describe", "smig", "shop"], capture_output=True, text=True, check=True
    ).stdout
    for reason in ("JobCreated", "ExpandSucceeded", "BackgroundSucceeded", "ContractSucceeded"):
        assert reason in described
    status = subprocess.run(
        [sys.executable, "-m", "lockgate", "status", "-n", namespace, "shop"],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
    )
    assert status.returncode == 0, status.stderr
    assert f"{namespace}/shop: target 1, applied 1, phase Complete, ready True" in status.stdout
    assert "pods at the gate: 0 waiting" in status.stdout and "contract" in status.stdout

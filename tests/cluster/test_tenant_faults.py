"""Many tenants under faults, on the real node: a Job pod's runner SIGKILLed mid-script (Kubernetes
retries the index; nothing is applied twice; a pod of several tenants killed mid-chunk still
reports those it finished), a tenant whose database cannot be reached (named with a
cause that holds no URL or password, the gate closed until its Secret is fixed and retried), and a
tenant added while a release's expand runs (it ends with that version, the gate for it opens only
once that tenant expanded it too, and the pods already serving stay Ready throughout)."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from devcluster.kube import Kube
from devcluster.postgres import free_port, in_cluster_url
from devcluster.workloads import condition, gated_deployment
from lockgate.controller.spec import GATE_CONDITION
from tests.operator_fixtures import Migrations, rolled_out
from tests.runner_support import history, query
from tests.tenants_support import (
    create_over_databases,
    job_pods,
    kill_runner,
    phase_is,
    running_pods,
    summary_is,
    tenant_databases,
    tenant_secret,
)

pytestmark = pytest.mark.timeout(600, func_only=True)
SLEEPING = "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state = 'active' AND query LIKE %s"


def sleeping_scripts(url: str) -> int:
    """How many backends on the server run a script's pg_sleep now."""
    return int(query(url, SLEEPING, "%pg_sleep%")[0][0])


def wait_for(what: str, predicate: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def pods_running(kube: Kube, namespace: str, job: str, count: int, timeout: float = 60) -> list[Any]:
    deadline = time.monotonic() + timeout
    while len(pods := running_pods(kube, namespace, job)) != count:
        assert time.monotonic() < deadline, f"{len(pods)} pods of {job} running, not {count}"
        time.sleep(0.2)
    return pods


def applied(url: str, table: str = "lockgate_schema_history") -> list[tuple[str, bool]]:
    """(script, success) for every row of the history: a script run twice, or failed once, shows."""
    return [row[2:] for row in history(url, table)]


def tenant_schemas(url: str) -> list[str]:
    """tenant_a, tenant_b and tenant_c, each a new schema in the database."""
    tenants = ["tenant_a", "tenant_b", "tenant_c"]
    for tenant in tenants:
        query(url, f"CREATE SCHEMA {tenant}")
    return tenants


def test_a_runner_sigkilled_mid_script_is_retried_by_kubernetes_and_applies_nothing_twice(
    kube: Kube, namespace: str, migrations: Migrations, run_operator: Any, database_url: str, cluster: Any
) -> None:
    tenants = tenant_schemas(database_url)
    scripts = {
        "V1__runs.sql": "CREATE TABLE runs (at timestamptz NOT NULL DEFAULT now());",
        # The insert commits with the history row or not at all: a second run would leave two rows.
        "V2__count.sql": "INSERT INTO runs DEFAULT VALUES;\nSELECT pg_sleep(15);",
    }
    run_operator()
    migrations.create(
        "killed",
        "2",
        migrations.scripts("killed-r1", scripts),
        targets={"schemas": tenants, "maxParallel": 2},
        backoffLimit=1,
        background={"enabled": False},
        contract={"enabled": False},
    )
    wait_for("two tenants inside V2's pg_sleep", lambda: sleeping_scripts(database_url) == 2)
    [job] = migrations.jobs("killed")
    victims = pods_running(kube, namespace, job.metadata.name, 2)  # the kubelet may report them a moment late
    assert sleeping_scripts(database_url) == 2  # still inside the script: the kill lands mid-transaction
    for pod in victims:
        kill_runner(cluster, pod)

    done = migrations.wait("killed", phase_is("Complete"), timeout=240)
    assert done["status"]["appliedVersion"] == "2" and condition(done, "Ready")["status"] == "True"
    assert done["status"]["targets"]["summary"] == "3/3 expand" and "failed" not in done["status"]["targets"]
    for tenant in tenants:
        table = f"{tenant}.lockgate_schema_history"
        assert applied(database_url, table) == [("V1__runs.sql", True), ("V2__count.sql", True)], tenant
        assert query(database_url, f"SELECT count(*) FROM {tenant}.runs") == [(1,)], tenant
    [job] = migrations.jobs("killed")  # Kubernetes retried the indexes inside the one Job
    pods = job_pods(kube, namespace, job.metadata.name)
    killed = {p.metadata.name: p.status.container_statuses[0].state.terminated for p in pods}
    assert [killed[p.metadata.name].exit_code for p in victims] == [137, 137]
    indexes = [p.metadata.labels["batch.kubernetes.io/job-completion-index"] for p in pods]
    victim_indexes = sorted(p.metadata.labels["batch.kubernetes.io/job-completion-index"] for p in victims)
    assert sorted(indexes) == sorted(["0", "1", "2", *victim_indexes]), indexes  # one retry per killed index
    assert (job.status.failed, job.status.succeeded) == (2, 3)


def test_a_pod_of_several_tenants_sigkilled_mid_chunk_keeps_the_tenants_it_finished(
    kube: Kube, namespace: str, migrations: Migrations, run_operator: Any, database_url: str, cluster: Any
) -> None:
    tenants = tenant_schemas(database_url)
    run_operator()
    migrations.create(
        "chunkkill",
        "1",
        migrations.scripts("chunkkill-r1", {"V1__slow.sql": "CREATE TABLE runs (id int);\nSELECT pg_sleep(4);"}),
        targets={"schemas": tenants, "perPod": 3},  # one pod, the three in turn
        backoffLimit=0,
        background={"enabled": False},
        contract={"enabled": False},
    )
    done = "SELECT count(*) FROM pg_tables WHERE schemaname = 'tenant_a' AND tablename = 'runs'"
    wait_for(
        "tenant_a committed, tenant_b inside its script",
        lambda: query(database_url, done) == [(1,)] and sleeping_scripts(database_url) == 1,
    )
    [job] = migrations.jobs("chunkkill")
    [pod] = pods_running(kube, namespace, job.metadata.name, 1)
    kill_runner(cluster, pod)

    failed = migrations.wait("chunkkill", phase_is("Failed"), timeout=240)
    died = f"its pod died before reporting this target: kubectl logs {pod.metadata.name}"
    targets = failed["status"]["targets"]
    assert targets["failed"] == [{"phase": "expand", "target": t, "error": died} for t in ("tenant_b", "tenant_c")]
    assert targets["summary"] == "1/3 expand, 2 failed"  # tenant_a's report, written before the kill, counts
    assert applied(database_url, "tenant_a.lockgate_schema_history") == [("V1__slow.sql", True)]
    [killed] = job_pods(kube, namespace, job.metadata.name)
    assert killed.status.container_statuses[0].state.terminated.exit_code == 137


def leaks(kube: Kube, namespace: str, migrations: Migrations, name: str, secrets: tuple[str, ...]) -> list[str]:
    """Where any of `secrets` shows: the SchemaMigration, the namespace's Events, the Jobs, their pods
    (termination messages included) and the pods' logs."""
    plain = kube.api.sanitize_for_serialization
    texts = {"SchemaMigration": json.dumps(migrations.get(name))}
    texts["Events"] = json.dumps(plain(kube.core.list_namespaced_event(namespace).items))
    for job in migrations.jobs(name):
        texts[f"Job {job.metadata.name}"] = json.dumps(plain(job))
        for pod in job_pods(kube, namespace, job.metadata.name):
            texts[f"pod {pod.metadata.name}"] = json.dumps(plain(pod))
            texts[f"log of {pod.metadata.name}"] = kube.core.read_namespaced_pod_log(pod.metadata.name, namespace)
    assert len(texts) > 4, list(texts)  # pods were read, not only the SchemaMigration
    return [where for where, text in texts.items() if any(secret in text for secret in secrets)]


def gate_status(kube: Kube, namespace: str) -> list[tuple[str, str]]:
    pods = kube.core.list_namespaced_pod(namespace, label_selector="app=web").items
    return [(c.status, c.reason) for p in pods for c in p.status.conditions or [] if c.type == GATE_CONDITION]


def test_an_unreachable_tenant_database_is_named_without_its_url_and_a_fixed_secret_retried_fixes_it(
    kube: Kube, namespace: str, migrations: Migrations, run_operator: Any, postgres: Any, cluster: Any
) -> None:
    urls = tenant_databases(postgres, namespace, "one", "two")
    for secret, url in urls.items():
        tenant_secret(kube, namespace, secret, url, cluster.node_ip)
    closed_password = f"closed-port-{namespace[-6:]}-pw"
    closed = f"postgresql://postgres:{closed_password}@{cluster.node_ip}:{free_port()}/nowhere"
    missing = postgres.url_for(f"t_missing_{namespace[-6:].replace('-', '_')}")  # the real password, no database
    tenant_secret(kube, namespace, "tenant-closed-db", closed, cluster.node_ip)
    tenant_secret(kube, namespace, "tenant-missing-db", missing, cluster.node_ip)
    secrets = ["tenant-one-db", "tenant-closed-db", "tenant-two-db", "tenant-missing-db"]
    run_operator()
    kube.apps.create_namespaced_deployment(namespace, gated_deployment("web", "dbs", "1", replicas=1))
    scripts = migrations.scripts("dbs-r1", {"V1__items.sql": "CREATE TABLE items (id int PRIMARY KEY);"})
    create_over_databases(
        kube,
        migrations,
        "dbs",
        "1",
        scripts,
        secrets,
        maxParallel=2,
        backoffLimit=0,
        background={"enabled": False},
        contract={"enabled": False},
    )
    failed = migrations.wait("dbs", phase_is("Failed"), timeout=240)
    assert "appliedVersion" not in failed["status"] and condition(failed, "Ready")["status"] == "False"
    named = {f["target"]: f["error"] for f in failed["status"]["targets"]["failed"]}
    assert sorted(named) == ["tenant-closed-db", "tenant-missing-db"], named
    assert named["tenant-closed-db"].startswith(f"cannot connect to the database at {cluster.node_ip}:"), named
    assert "Connection refused" in named["tenant-closed-db"], named
    assert "does not exist" in named["tenant-missing-db"], named
    assert failed["status"]["targets"]["summary"] == "2/4 expand, 2 failed"
    for secret in ("tenant-one-db", "tenant-two-db"):  # the others finished
        assert applied(urls[secret]) == [("V1__items.sql", True)]
    wait_for("the gated pod's condition", lambda: gate_status(kube, namespace) != [])
    assert gate_status(kube, namespace) == [("False", "WaitingForSchema")]  # the gate stays closed
    hidden = (urlsplit(postgres.url).password or "", closed_password, in_cluster_url(missing, cluster.node_ip), closed)
    assert all(hidden) and leaks(kube, namespace, migrations, "dbs", hidden) == []

    fixed = tenant_databases(postgres, namespace, "closed")  # the tenant's database, now where its Secret says
    patch = {"stringData": {"url": in_cluster_url(fixed["tenant-closed-db"], cluster.node_ip)}}
    kube.core.patch_namespaced_secret("tenant-closed-db", namespace, patch)
    urls |= fixed | {"tenant-missing-db": postgres.create_database(missing.rsplit("/", 1)[1])}
    migrations.patch("dbs", {"metadata": {"annotations": {"lockgate.dev/retry": "1"}}})
    done = migrations.wait("dbs", phase_is("Complete"), timeout=240)
    assert done["status"]["appliedVersion"] == "1" and done["status"]["targets"]["summary"] == "4/4 expand"
    for secret in secrets:
        assert applied(urls[secret]) == [("V1__items.sql", True)], secret
    rolled_out(kube, namespace, "web", timeout=60)  # the gate opened once every tenant expanded
    assert leaks(kube, namespace, migrations, "dbs", hidden) == []


def current(body: dict[str, Any]) -> bool:
    """Written for the latest spec, with version 2 expanded."""
    status = body.get("status") or {}
    return status.get("observedGeneration") == body["metadata"]["generation"] and status.get("appliedVersion") == "2"


def serving(kube: Kube, namespace: str) -> list[tuple[str, Any, Any]]:
    """Each app pod's name with when its gate and its Ready last changed."""
    pods = kube.core.list_namespaced_pod(namespace, label_selector="app=web").items
    found = []
    for pod in pods:
        conditions = {c.type: c for c in pod.status.conditions or []}
        gate, ready = conditions[GATE_CONDITION], conditions["Ready"]
        assert (gate.status, ready.status) == ("True", "True"), pod.status.conditions
        found.append((pod.metadata.name, gate.last_transition_time, ready.last_transition_time))
    return found


def test_a_tenant_added_while_expand_runs_ends_with_that_version_and_the_serving_pods_stay_ready(
    kube: Kube, namespace: str, migrations: Migrations, run_operator: Any, postgres: Any, cluster: Any
) -> None:
    urls = tenant_databases(postgres, namespace, "one", "two", "three")
    for secret in ("tenant-one-db", "tenant-two-db"):
        tenant_secret(kube, namespace, secret, urls[secret], cluster.node_ip)
    release_1 = {"V1__items.sql": "CREATE TABLE items (id int PRIMARY KEY);"}
    release_2 = release_1 | {"V2__note.sql": "ALTER TABLE items ADD COLUMN note text;\nSELECT pg_sleep(6);"}
    run_operator()
    off = {"background": {"enabled": False}, "contract": {"enabled": False}}
    create_over_databases(
        kube, migrations, "dbs", "1", migrations.scripts("dbs-r1", release_1), ["tenant-one-db", "tenant-two-db"], **off
    )
    migrations.wait("dbs", phase_is("Complete"), timeout=240)
    kube.apps.create_namespaced_deployment(namespace, gated_deployment("web", "dbs", "1", replicas=2))
    rolled_out(kube, namespace, "web", timeout=60)
    before = serving(kube, namespace)

    release = {"version": "2", "migrations": {"configMap": {"name": migrations.scripts("dbs-r2", release_2)}}}
    migrations.patch("dbs", {"spec": release})
    wait_for("both tenants inside V2's pg_sleep", lambda: sleeping_scripts(postgres.url) == 2)
    tenant_secret(kube, namespace, "tenant-three-db", urls["tenant-three-db"], cluster.node_ip)
    every = ["tenant-one-db", "tenant-two-db", "tenant-three-db"]
    migrations.patch("dbs", {"spec": {"targets": {"databases": {"secrets": every}}}})
    assert serving(kube, namespace) == before

    done = migrations.wait("dbs", lambda b: current(b) and summary_is("3/3 expand")(b), timeout=240)
    assert done["status"]["appliedVersion"] == "2" and done["status"]["phase"] == "RollingOut"  # web requires 1
    over_every = done["status"]["history"][-1]  # the gate for 2 opened only once the new tenant expanded too
    assert (over_every["version"], over_every["targets"]["total"], over_every["result"]) == ("2", 3, "Succeeded")
    opened = condition(done, "Ready")
    assert opened["status"] == "True" and opened["lastTransitionTime"] >= over_every["completionTime"], opened
    for secret in every:  # the new tenant got both versions; no tenant got one twice
        assert applied(urls[secret]) == [("V1__items.sql", True), ("V2__note.sql", True)], secret
    assert serving(kube, namespace) == before  # the same pods, their gate and Ready never changed
    expand_2 = [j for j in migrations.jobs("dbs") if j.metadata.labels["lockgate.dev/version"] == "2"]
    newest = max(expand_2, key=lambda j: j.metadata.creation_timestamp)
    assert newest.spec.completions == 3, [(j.metadata.name, j.spec.completions) for j in expand_2]

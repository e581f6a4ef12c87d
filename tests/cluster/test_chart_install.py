"""`helm install` of charts/lockgate into the real control plane, then a migration end to end.

The operator runs as a pod of the chart's Deployment, from the project's own image (a container
on the real node, with the chart's ServiceAccount token projected and in-cluster config),
so every API call it makes is authorized by the chart's RBAC. A SchemaMigration then has to
become Ready through a real Job against a real PostgreSQL, `kubectl wait` and `kubectl get smig`
work on it, and with one permission removed the same migration must not get anywhere.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.rest import ApiException

from devcluster.images.recipes import LOCKGATE_IMAGE
from devcluster.kube import Kube, watch_until
from tests.chart_release import (
    GROUP,
    PLURAL,
    VERSION,
    Release,
    assert_no_password_in,
    create_migration,
    kubectl,
    ready_condition,
    tables,
    wait_ready,
)
from tests.chart_support import CHART, REPO, helm, install_app, split_image
from tests.health_support import argocd_health, kstatus
from tests.operator_fixtures import Migrations


@pytest.fixture
def extra_namespace(kube: Kube, namespace: str) -> Iterator[str]:
    """A second namespace (the operator's own, in the namespaced install), deleted afterwards."""
    name = f"{namespace[:50]}-op"
    kube.core.create_namespace({"metadata": {"name": name, "labels": {"lockgate.dev/test": "true"}}})
    watch_until(
        kube.core.list_namespaced_service_account,
        lambda sa: True,
        namespace=name,
        field_selector="metadata.name=default",
    )
    yield name
    try:
        kube.core.delete_namespace(name)
    except ApiException as e:
        if e.status != 404:
            raise


def assert_migrated_with_kubectl(release: Release, namespace: str, name: str, database_url: str) -> None:
    try:
        body = wait_ready(release.kube, namespace, name)
    except TimeoutError as e:
        raise AssertionError(f"{e}\n\noperator log (end):\n{release.log()[-6000:]}") from None
    assert body["status"]["appliedVersion"] == "1"
    assert "t" in tables(database_url)
    waited = kubectl(
        release.kubeconfig,
        "wait",
        "--for=condition=Ready",
        f"smig/{name}",
        "-n",
        namespace,
        "--timeout=60s",
        check=False,
    )
    assert waited.returncode == 0 and f"schemamigration.lockgate.dev/{name} condition met" in waited.stdout, (
        waited.stdout + waited.stderr
    )
    listing = kubectl(release.kubeconfig, "get", "smig", "-n", namespace).stdout.splitlines()
    assert listing[0].split() == ["NAME", "TARGET", "APPLIED", "PHASE", "READY", "PROGRESS", "TARGETS", "AGE"]
    row = next(line.split() for line in listing[1:] if line.split()[0] == name)
    assert (
        row[1:3] == ["1", "1"]
        and row[4] == "True"
        and row[3] in {"RollingOut", "Backfilling", "ContractPending", "Contracting", "Complete"}
    )
    # The Argo CD health check agrees on the live object.
    assert (
        argocd_health(release.kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))[0]
        == "Healthy"
    )
    # The operator never sees the database URL, so it cannot log it.
    assert_no_password_in(release.log(), database_url)


def test_helm_install_cluster_wide_runs_the_operator_with_its_own_credentials_and_migrates(
    cluster: Any, kube: Kube, namespace: str, database_url: str, release_factory: Callable[[str], Release]
) -> None:
    started = time.monotonic()
    release = release_factory(namespace).install(cluster.real_image)
    assert f"kubectl -n {namespace} rollout status deployment/{release.fullname}" in release.notes
    pod = release.operator_pod()
    assert pod.spec.service_account_name == release.fullname
    assert pod.spec.containers[0].security_context.read_only_root_filesystem is True
    role = kube.rbac.read_cluster_role(release.fullname)
    assert role.metadata.labels["app.kubernetes.io/instance"] == release.name
    # What the probes and the metrics Service point at answers.
    probe = pod.spec.containers[0].liveness_probe.http_get
    assert (probe.path, probe.port) == ("/healthz", "health")
    release.get(pod, "healthPort", "/healthz")
    assert "lockgate_jobs_total" in release.get(pod, "metricsPort", "/metrics")
    # Least privilege as the API server sees it.
    assert release.can("create", "jobs", namespace) and release.can("patch", "pods/status", namespace)
    assert release.can("delete", "jobs", namespace)  # a create that landed late is deleted unrun
    assert (
        not release.can("get", "secrets", namespace)
        and not release.can("delete", "pods", namespace)
        and not release.can("create", "pods", namespace)
    )

    create_migration(kube, namespace, "shop", cluster.real_image, database_url, cluster.node_ip)
    assert_migrated_with_kubectl(release, namespace, "shop", database_url)
    # The Argo CD example passes the real API server's validation (CRD schema and CEL rules included).
    dry_run = kubectl(
        release.kubeconfig,
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        str(REPO / "examples" / "argocd" / "shop"),
        check=False,
    )
    assert dry_run.returncode == 0, dry_run.stderr
    print(f"cluster-wide install to Ready: {time.monotonic() - started:.1f}s")


def test_helm_install_with_watch_namespaces_uses_roles_only_there(
    cluster: Any,
    kube: Kube,
    namespace: str,
    extra_namespace: str,
    database_url: str,
    release_factory: Callable[[str], Release],
) -> None:
    # The operator lives in its own namespace and watches only the test namespace.
    release = release_factory(extra_namespace).install(cluster.real_image, watchNamespaces=[namespace])
    release.operator_pod()
    with pytest.raises(ApiException) as missing:
        kube.rbac.read_cluster_role(release.fullname)
    assert missing.value.status == 404
    assert kube.rbac.read_namespaced_role(release.fullname, namespace).metadata.name == release.fullname
    assert (
        release.can("create", "jobs", namespace)
        and not release.can("create", "jobs", extra_namespace)
        and not release.can("list", "schemamigrations", "default")
    )

    create_migration(kube, namespace, "shop", cluster.real_image, database_url, cluster.node_ip)
    assert_migrated_with_kubectl(release, namespace, "shop", database_url)


def operator_without_job_create(
    kube: Kube, namespace: str, image: str, release_factory: Callable[[str], Release]
) -> Release:
    """The chart's operator, running, with `create` taken away from the Jobs rule of its ClusterRole."""
    release = release_factory(namespace).install(image)
    release.operator_pod()
    role = kube.rbac.read_cluster_role(release.fullname)
    for rule in role.rules:
        if "jobs" in rule.resources:
            rule.verbs = [v for v in rule.verbs if v != "create"]
    kube.rbac.replace_cluster_role(release.fullname, role)
    deadline = time.monotonic() + 30
    while release.can("create", "jobs", namespace):
        assert time.monotonic() < deadline, "the RBAC change never took effect"
        time.sleep(0.5)
    return release


def test_a_missing_permission_keeps_the_migration_from_becoming_ready(
    cluster: Any, kube: Kube, namespace: str, database_url: str, release_factory: Callable[[str], Release]
) -> None:
    release = operator_without_job_create(kube, namespace, cluster.real_image, release_factory)
    create_migration(kube, namespace, "shop", cluster.real_image, database_url, cluster.node_ip)
    # The operator reports the refusal (its log; the API error names the verb, resource and account).
    refused = re.compile(
        rf'{re.escape(release.service_account)}\\?" cannot create resource \\?"jobs\\?" in API group \\?"batch\\?"'
    )
    deadline = time.monotonic() + 90
    while not refused.search(log := release.log()):
        if time.monotonic() > deadline:
            pytest.fail(f"the operator never reported the Forbidden Job create; log:\n{log[-4000:]}")
        time.sleep(1)
    with pytest.raises(TimeoutError):
        wait_ready(kube, namespace, "shop", timeout=10)
    body = kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "shop")
    assert ready_condition(body).get("status") != "True"
    assert not kube.batch.list_namespaced_job(namespace).items
    assert "t" not in tables(database_url)
    assert argocd_health(body)[0] == "Degraded"
    status, message = kstatus(body)  # Failed, not InProgress: Helm 4 --wait and Flux stop waiting
    assert status == "Failed" and refused.search(message), message
    assert_no_password_in(release.log(), database_url)


def test_helm_4_install_wait_fails_fast_when_the_operator_lacks_a_permission(
    cluster: Any, kube: Kube, namespace: str, migrations: Migrations, release_factory: Callable[[str], Release]
) -> None:
    operator_without_job_create(kube, namespace, cluster.real_image, release_factory)
    scripts = migrations.scripts("app-r1", {"V1__t.sql": "CREATE TABLE t (id int);"})
    result, seconds = install_app(
        cluster, namespace, "app", scripts, migrations.image, **{"app.progressDeadlineSeconds": "30"}
    )
    assert result.returncode != 0
    assert "SchemaMigration" in result.stderr and re.search(r'cannot create resource \\*"jobs', result.stderr), (
        result.stderr
    )
    assert seconds < 120, f"helm --wait took {seconds:.0f}s of its 300s timeout"
    print(f"helm install --wait with the operator lacking a permission: failed after {seconds:.1f}s (timeout 300s)")


def test_the_chart_installs_from_an_oci_registry_with_the_image_pinned_by_digest(
    cluster: Any,
    kube: Kube,
    namespace: str,
    database_url: str,
    tmp_path: Path,
    release_factory: Callable[[str], Release],
) -> None:
    """README's install section: `helm package`, `helm push` to oci://, `helm install` from there
    (Helm 4), the image by digest from the registry the node pulls from."""
    if not cluster.local:
        pytest.skip("the local cluster's registry")
    registry = cluster.registry
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    helm("package", str(CHART), "--destination", str(tmp_path))
    pushed = helm("push", str(tmp_path / f"lockgate-{version}.tgz"), f"oci://{registry.host}/charts", "--plain-http")
    assert f"Pushed: {registry.host}/charts/lockgate:{version}" in pushed.stdout + pushed.stderr
    repository, _ = split_image(registry.ref(LOCKGATE_IMAGE))  # 127.0.0.1:PORT/library/lockgate
    digest = registry.pushed[LOCKGATE_IMAGE]
    chart = (f"oci://{registry.host}/charts/lockgate", "--version", version, "--plain-http")
    release = release_factory(namespace).install(registry.ref(LOCKGATE_IMAGE), chart=chart, digest=digest)
    pod = release.operator_pod()
    assert pod.spec.containers[0].image == f"{repository}@{digest}"
    assert pod.status.container_statuses[0].image_id.endswith(digest)
    listed = helm("list", "-n", namespace, "-o", "json", kubeconfig=release.kubeconfig).stdout
    assert f'"chart":"lockgate-{version}"' in listed.replace(" ", "")
    create_migration(kube, namespace, "shop", f"{repository}@{digest}", database_url, cluster.node_ip)
    assert_migrated_with_kubectl(release, namespace, "shop", database_url)

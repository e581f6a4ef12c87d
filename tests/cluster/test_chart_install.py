"""`helm install` of charts/lockgate into the real control plane, then a migration end to end.

The operator runs as a pod of the chart's Deployment, from the project's own image (a container
on the real node, with the chart's ServiceAccount token projected and in-cluster config),
so every API call it makes is authorized by the chart's RBAC. A SchemaMigration then has to
become Ready through a real Job against a real PostgreSQL, `kubectl wait` and `kubectl get smig`
work on it, and with one permission removed the same migration must not get anywhere.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from kubernetes.client.rest import ApiException

from devcluster.images.recipes import LOCKGATE_IMAGE
from devcluster.kube import Kube, watch_until
from devcluster.postgres import free_port, in_cluster_url
from tests.chart_support import CHART, REPO, bin_dir, helm, install_app, split_image
from tests.health_support import argocd_health, kstatus
from tests.operator_fixtures import Migrations

GROUP, VERSION, PLURAL = "lockgate.dev", "v1alpha1", "schemamigrations"
CRD_NAME = "schemamigrations.lockgate.dev"
SCRIPTS = {"V1__t.sql": "CREATE TABLE t (id int);"}
OPERATOR_READY_SECONDS = 120
MIGRATION_READY_SECONDS = 150


def kubectl(kubeconfig: Path, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(bin_dir() / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stdout}{result.stderr}")
    return result


@dataclass
class Release:
    """One install of the chart; uninstalled (with its cluster-scoped RBAC) at teardown."""

    name: str
    namespace: str
    kubeconfig: Path
    kube: Kube
    workdir: Path
    notes: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    installed: bool = field(default=False, repr=False)

    @property
    def fullname(self) -> str:
        return f"{self.name}-lockgate"

    @property
    def service_account(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.fullname}"

    def install(self, image: str, chart: Sequence[str] = (str(CHART),), digest: str = "", **values: Any) -> Release:
        """`helm install` of `chart` (the checkout's unless it names another: `oci://...` and its flags)."""
        repository, tag = split_image(image)
        skip_crds = crd_exists(self.kube)  # helm would skip it anyway; say so explicitly
        values = {
            "image": {"repository": repository, "tag": tag, "digest": digest, "pullPolicy": "IfNotPresent"},
            "healthPort": free_port(),
            "metricsPort": free_port(),
            **values,
        }
        values_file = self.workdir / f"values-{self.name}.yaml"
        values_file.write_text(yaml.safe_dump(values))
        self.values = values
        args = [
            "install",
            self.name,
            *chart,
            "--namespace",
            self.namespace,
            "--values",
            str(values_file),
            "--wait",
            "--timeout",
            f"{OPERATOR_READY_SECONDS}s",
        ]
        result = helm(*args, *(["--skip-crds"] if skip_crds else []), kubeconfig=self.kubeconfig)
        self.installed = True
        self.notes = result.stdout
        watch_until(
            self.kube.apiextensions.list_custom_resource_definition,
            lambda c: any(x.type == "Established" and x.status == "True" for x in c.status.conditions or []),
            field_selector=f"metadata.name={CRD_NAME}",
        )
        return self

    def operator_pod(self) -> Any:
        return watch_until(
            self.kube.core.list_namespaced_pod,
            lambda p: any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []),
            timeout=OPERATOR_READY_SECONDS,
            namespace=self.namespace,
            label_selector=f"app.kubernetes.io/instance={self.name}",
        )

    def log(self) -> str:
        return kubectl(self.kubeconfig, "logs", "-n", self.namespace, f"deployment/{self.fullname}", "--tail=-1").stdout

    def can(self, verb: str, resource: str, namespace: str) -> bool:
        """The API server's own authorization answer for the operator's ServiceAccount."""
        resource, _, subresource = resource.partition("/")
        extra = [f"--subresource={subresource}"] if subresource else []
        result = kubectl(
            self.kubeconfig,
            "auth",
            "can-i",
            verb,
            resource,
            *extra,
            "-n",
            namespace,
            f"--as={self.service_account}",
            check=False,
        )
        return result.stdout.strip() == "yes"

    def get(self, pod: Any, port_value: str, path: str) -> str:
        """GET a path of the operator pod on the port the chart configured, through the API server's pod proxy."""
        port = self.values[port_value]
        return str(
            self.kube.core.connect_get_namespaced_pod_proxy_with_path(
                f"{pod.metadata.name}:{port}", self.namespace, path.lstrip("/")
            )
        )

    def uninstall(self) -> None:
        if self.installed:
            helm(
                "uninstall",
                self.name,
                "--namespace",
                self.namespace,
                "--wait",
                "--timeout",
                "60s",
                kubeconfig=self.kubeconfig,
                check=False,
            )
            self.installed = False


def crd_exists(kube: Kube) -> bool:
    try:
        kube.apiextensions.read_custom_resource_definition(CRD_NAME)
        return True
    except ApiException as e:
        if e.status == 404:
            return False
        raise


@pytest.fixture
def release_factory(kubeconfig: Path, kube: Kube, tmp_path: Path) -> Iterator[Callable[[str], Release]]:
    releases: list[Release] = []

    def make(namespace: str) -> Release:
        releases.append(Release(f"lg-{uuid.uuid4().hex[:6]}", namespace, kubeconfig, kube, tmp_path))
        return releases[-1]

    yield make
    for release in releases:
        release.uninstall()


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


def create_migration(kube: Kube, namespace: str, name: str, image: str, database_url: str, node_ip: str) -> None:
    # The URL the migration Job's pod reaches the database by (on kind: PostgreSQL inside the cluster).
    kube.core.create_namespaced_secret(
        namespace, {"metadata": {"name": f"{name}-db"}, "stringData": {"url": in_cluster_url(database_url, node_ip)}}
    )
    kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": f"{name}-scripts"}, "data": SCRIPTS})
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SchemaMigration",
        "metadata": {"name": name},
        "spec": {
            "version": "1",
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "database": {"urlFrom": {"secretKeyRef": {"name": f"{name}-db", "key": "url"}}},
            "migrations": {"configMap": {"name": f"{name}-scripts"}},
        },
    }
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def ready_condition(body: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in (body.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), {})


def wait_ready(kube: Kube, namespace: str, name: str, timeout: float = MIGRATION_READY_SECONDS) -> dict[str, Any]:
    return watch_until(
        kube.custom.list_namespaced_custom_object,
        lambda b: (
            ready_condition(b).get("status") == "True"
            and (b.get("status") or {}).get("observedGeneration") == b["metadata"]["generation"]
        ),
        timeout=timeout,
        group=GROUP,
        version=VERSION,
        namespace=namespace,
        plural=PLURAL,
        field_selector=f"metadata.name={name}",
    )


def tables(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        return {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def assert_no_password_in(text: str, database_url: str) -> None:
    """Neither the tests' nor the pods' database password appears in `text`."""
    from sqlalchemy.engine import make_url

    for url in {database_url, in_cluster_url(database_url)}:
        password = make_url(url).password
        assert password, "the test database URL carries a password"
        assert str(password) not in text


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


def test_a_secret_selector_without_the_chart_value_says_which_to_set_and_goes_on_once_granted(
    cluster: Any, kube: Kube, namespace: str, database_url: str, release_factory: Callable[[str], Release]
) -> None:
    """spec.targets.databases.selector needs `list` on Secrets, which the chart grants only with
    rbac.secretSelector=true: without it the SchemaMigration says so; granted, it migrates with no edit."""
    release = release_factory(namespace).install(cluster.real_image)
    release.operator_pod()
    assert not release.can("list", "secrets", namespace)
    create_selector_migration(kube, namespace, cluster.real_image, in_cluster_url(database_url, cluster.node_ip))
    stalled = watch_until(
        kube.custom.list_namespaced_custom_object,
        lambda b: "rbac.secretSelector=true" in str((b.get("status") or {}).get("conditions")),
        timeout=MIGRATION_READY_SECONDS,
        group=GROUP, version=VERSION, namespace=namespace, plural=PLURAL, field_selector="metadata.name=sel",
    )  # fmt: skip
    assert kstatus(stalled)[0] == "Failed" and not kube.batch.list_namespaced_job(namespace).items

    # What rbac.secretSelector=true adds (tests/tools/test_chart.py): `list`, no get or watch.
    role = kube.rbac.read_cluster_role(release.fullname)
    role.rules.append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]})
    kube.rbac.replace_cluster_role(release.fullname, role)
    done = wait_ready(kube, namespace, "sel")  # picked up within the selector's refresh: no edit needed
    assert done["status"]["targets"]["phases"]["expand"]["succeeded"] == 1 and "t" in tables(database_url)
    assert not release.can("get", "secrets", namespace)
    assert_no_password_in(release.log(), database_url)


def test_with_rbac_secret_selector_the_operator_lists_tenant_secrets_by_metadata_only(
    cluster: Any,
    audit_log: Path,  # before kube: on an existing cluster the test skips before it touches anything
    kube: Kube,
    namespace: str,
    database_url: str,
    release_factory: Callable[[str], Release],
) -> None:
    """The API server's audit log (devcluster's policy: Secret reads by service accounts) says what
    the operator's account asked for and got back: lists of names and labels, never a Secret's
    data, never a get. A plain list would log a SecretList with each Secret's `data`."""
    release = release_factory(namespace).install(cluster.real_image, rbac={"secretSelector": True})
    release.operator_pod()
    assert release.can("list", "secrets", namespace) and not release.can("get", "secrets", namespace)
    create_selector_migration(kube, namespace, cluster.real_image, in_cluster_url(database_url, cluster.node_ip))
    assert wait_ready(kube, namespace, "sel")["status"]["targets"]["phases"]["expand"]["succeeded"] == 1
    reads = secret_reads(audit_log, release.service_account)
    lists = [e for e in reads if e["verb"] == "list" and e["responseStatus"]["code"] == 200]
    assert lists, f"no list of Secrets by {release.service_account} in {audit_log}"
    assert {e["verb"] for e in reads} == {"list"}
    # Cluster-wide, it also lists for SchemaMigrations that other tests left in namespaces being deleted.
    for event in lists:
        listed = event["responseObject"]
        assert (listed["apiVersion"], listed["kind"]) == ("meta.k8s.io/v1", "PartialObjectMetadataList"), listed
        assert not {"data", "stringData"} & keys_in(listed), listed
    ours = [e["responseObject"] for e in lists if e["objectRef"]["namespace"] == namespace]
    assert ours and all([item["metadata"]["name"] for item in answer["items"]] == ["t1-db"] for answer in ours)


def create_selector_migration(kube: Kube, namespace: str, image: str, url: str) -> None:
    """SchemaMigration `sel` over the Secrets labelled lockgate.dev/tenant=yes: `t1-db`, holding `url`."""
    labels = {"lockgate.dev/tenant": "yes"}
    kube.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "t1-db", "labels": labels}, "stringData": {"url": url}}
    )
    kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": "sel-scripts"}, "data": SCRIPTS})
    spec = {"version": "1", "image": image, "imagePullPolicy": "IfNotPresent"}
    spec |= {
        "migrations": {"configMap": {"name": "sel-scripts"}},
        "targets": {"databases": {"selector": {"matchLabels": labels}}},
    }
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SchemaMigration", "metadata": {"name": "sel"}, "spec": spec}
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def secret_reads(audit_log: Path, user: str) -> list[dict[str, Any]]:
    """The audit log's events of `user` on Secrets (what the policy records: get, list, watch)."""
    events = [json.loads(line) for line in audit_log.read_text().splitlines()]
    return [e for e in events if e["user"]["username"] == user and e["objectRef"]["resource"] == "secrets"]


def keys_in(value: Any) -> set[str]:
    """Every key of every mapping inside a decoded JSON value."""
    if isinstance(value, dict):
        return set(value).union(*(keys_in(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(keys_in(v) for v in value))
    return set()


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

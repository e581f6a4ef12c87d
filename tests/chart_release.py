"""One install of charts/lockgate into the real control plane, for the chart's cluster tests: the
Release (helm install/uninstall, its operator pod, its rights), the `release_factory` fixture, and a
SchemaMigration over one database checked from outside."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from kubernetes.client.rest import ApiException

from devcluster.kube import Kube, watch_until
from devcluster.postgres import free_port, in_cluster_url
from tests.chart_support import CHART, bin_dir, helm, split_image

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

"""Fixtures for end-to-end tests of the operator on the real control plane, with Jobs that
really run `lockgate migrate` against the real PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import yaml
from kubernetes import watch
from kubernetes.client.rest import ApiException

from devcluster.kube import Kube, deployment_rolled_out, watch_until
from devcluster.postgres import free_port, in_cluster_url
from devcluster.workloads import CRD, condition, operator_command
from lockgate.controller.observed import Observed, job_pod_view, job_view
from lockgate.controller.spec import GROUP, OWNER_LABEL, PLURAL, VERSION, owner_label, parse_migration


@pytest.fixture(scope="session")
def crd(kube: Kube) -> dict[str, Any]:
    """The project's CRD, installed (or updated) once per session and Established."""
    manifest = yaml.safe_load(CRD.read_text())
    name = manifest["metadata"]["name"]
    try:
        current = kube.apiextensions.read_custom_resource_definition(name)
        manifest["metadata"]["resourceVersion"] = current.metadata.resource_version
        kube.apiextensions.replace_custom_resource_definition(name, manifest)
    except ApiException as exc:
        if exc.status != 404:
            raise
        kube.apiextensions.create_custom_resource_definition(manifest)
    watch_until(
        kube.apiextensions.list_custom_resource_definition,
        lambda c: any(cond.type == "Established" and cond.status == "True" for cond in c.status.conditions or []),
        field_selector=f"metadata.name={name}",
    )
    return manifest


@dataclass
class Operator:
    """One `lockgate run` process for a namespace."""

    process: Any
    metrics_port: int

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()


@pytest.fixture
def run_operator(crd: dict[str, Any], start_operator: Callable[..., Any], namespace: str) -> Callable[..., Operator]:
    def run(name: str = "operator", watch_namespace: str | None = None) -> Operator:
        metrics = free_port()
        command = operator_command(watch_namespace or namespace, metrics)
        return Operator(start_operator(command, name=name), metrics)

    return run


def migration_body(name: str, version: str, image: str, secret: str, **spec: Any) -> dict[str, Any]:
    """A SchemaMigration whose database URL is in `secret` (key `url`)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SchemaMigration",
        "metadata": {"name": name},
        "spec": {
            "version": version,
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "database": {"urlFrom": {"secretKeyRef": {"name": secret, "key": "url"}}},
            **spec,
        },
    }


@dataclass
class Migrations:
    """SchemaMigrations in one test namespace, with scripts shipped as ConfigMaps."""

    kube: Kube
    namespace: str
    image: str
    database_url: str
    node_ip: str = ""
    secret: str = "app-db"

    def __post_init__(self) -> None:
        url = in_cluster_url(self.database_url, self.node_ip)
        self.kube.core.create_namespaced_secret(
            self.namespace, {"metadata": {"name": self.secret}, "stringData": {"url": url}}
        )

    def scripts(self, name: str, files: dict[str, str]) -> str:
        """A ConfigMap holding one release's scripts; returns its name."""
        self.kube.core.create_namespaced_config_map(self.namespace, {"metadata": {"name": name}, "data": files})
        return name

    def body(self, name: str, version: str, config_map: str, image: str | None = None, **spec: Any) -> dict[str, Any]:
        scripts = {"configMap": {"name": config_map}}
        return migration_body(name, version, image or self.image, self.secret, migrations=scripts, **spec)

    def create(self, name: str, version: str, config_map: str, **spec: Any) -> dict[str, Any]:
        return self.kube.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.body(name, version, config_map, **spec)
        )

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.kube.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, patch)

    def get(self, name: str) -> dict[str, Any]:
        return self.kube.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def wait(self, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 90) -> dict[str, Any]:
        return watch_until(
            self.kube.custom.list_namespaced_custom_object,
            predicate,
            timeout=timeout,
            group=GROUP,
            version=VERSION,
            namespace=self.namespace,
            plural=PLURAL,
            field_selector=f"metadata.name={name}",
        )

    def wait_condition(self, name: str, kind: str, status: str = "True", timeout: float = 90) -> dict[str, Any]:
        return self.wait(name, lambda body: condition(body, kind).get("status") == status, timeout)

    def events(self, name: str) -> list[Any]:
        return self.kube.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={name}").items

    def wait_event(self, name: str, reason: str, timeout: float = 30) -> Any:
        return watch_until(
            self.kube.core.list_namespaced_event,
            lambda e: e.reason == reason,
            timeout=timeout,
            namespace=self.namespace,
            field_selector=f"involvedObject.name={name}",
        )

    def jobs(self, name: str) -> list[Any]:
        return self.kube.batch.list_namespaced_job(
            self.namespace, label_selector=f"{OWNER_LABEL}={owner_label(name)}"
        ).items


@pytest.fixture
def migrations(kube: Kube, namespace: str, cluster: Any, database_url: str) -> Migrations:
    return Migrations(kube, namespace, cluster.real_image, database_url, cluster.node_ip)


def rolled_out(kube: Kube, namespace: str, name: str, timeout: float = 90) -> Any:
    """The Deployment `name` once rolled out: its pods passed the gate."""
    return watch_until(
        kube.apps.list_namespaced_deployment,
        deployment_rolled_out,
        timeout=timeout,
        namespace=namespace,
        field_selector=f"metadata.name={name}",
    )


@dataclass
class JobRecorder:
    """Every Job ever created in a namespace, even ones TTL deletes before anyone looks."""

    kube: Kube
    namespace: str
    created: dict[str, tuple[str, str, str, float]] = field(
        default_factory=dict
    )  # name -> (owner, phase, version, seen at)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> JobRecorder:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        resource_version = None
        while not self._stop.is_set():  # resume from the last resourceVersion: no Job slips between streams
            try:
                if resource_version is None:
                    listing = self.kube.batch.list_namespaced_job(self.namespace)
                    for job in listing.items:
                        self._record(job)
                    resource_version = listing.metadata.resource_version
                stream = watch.Watch().stream(
                    self.kube.batch.list_namespaced_job,
                    self.namespace,
                    resource_version=resource_version,
                    timeout_seconds=5,
                )
                for event in stream:
                    self._record(event["object"])
                    resource_version = event["object"].metadata.resource_version
            except Exception:  # an API server outage (some tests make one): list again once it answers
                resource_version = None
                self._stop.wait(0.5)

    def _record(self, job: Any) -> None:
        labels = job.metadata.labels or {}
        owner, phase, version = (labels.get(f"lockgate.dev/{k}", "") for k in ("schemamigration", "phase", "version"))
        self.created.setdefault(job.metadata.name, (owner, phase, version, time.monotonic()))

    def stop(self) -> None:
        self._stop.set()

    def per_phase(self) -> dict[tuple[str, str, str], list[str]]:
        grouped: dict[tuple[str, str, str], list[str]] = {}
        for name, (owner, phase, version, _) in sorted(self.created.items()):
            grouped.setdefault((owner, phase, version), []).append(name)
        return grouped


@pytest.fixture
def job_recorder(kube: Kube, namespace: str) -> Iterator[JobRecorder]:
    recorder = JobRecorder(kube, namespace).start()
    yield recorder
    recorder.stop()


def live_view(clients: Kube, ahead: timedelta = timedelta(0)) -> Callable[[tuple[str, str]], Observed]:
    """What the kopf indexes would hold, read from the API (the migration, its Jobs and their
    pods), decided as if `ahead` had passed: how the shell tests drive the reconciler without kopf."""

    def observe(key: tuple[str, str]) -> Observed:  # the reconciler's Key
        namespace, name = key
        try:
            body = clients.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            migration = parse_migration(clients.api.sanitize_for_serialization(body))
        except ApiException as exc:
            if exc.status != 404:
                raise
            migration = None
        selector = f"{OWNER_LABEL}={name}"
        jobs = clients.batch.list_namespaced_job(namespace, label_selector=selector).items
        pods = clients.core.list_namespaced_pod(namespace, label_selector=selector).items
        plain = clients.api.sanitize_for_serialization
        return Observed(
            migration,
            namespace,
            name,
            jobs=tuple(job_view(plain(j)) for j in jobs),
            job_pods=tuple(job_pod_view(plain(p)) for p in pods),
            now=datetime.now(timezone.utc) + ahead,
        )

    return observe

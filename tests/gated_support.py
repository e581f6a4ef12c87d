"""An example's app gated on its SchemaMigration, on the cluster: its manifests created, its migration
and pods followed. The tool examples' end-to-end tests (Django, Alembic, Flyway) walk releases with it."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from devcluster.kube import Kube, deployment_rolled_out, temporary_namespace
from devcluster.shop import create, wait_for
from devcluster.workloads import condition
from lockgate.controller.spec import GROUP, PLURAL, REQUIRES_ANNOTATION, VERSION

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}


def example_migration(path: Path, image: str) -> dict[str, Any]:
    """An example's SchemaMigration with the locally built image (pulled once from the cluster's registry)."""
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    document["spec"].update(image=image, imagePullPolicy="IfNotPresent")
    return document


@contextmanager
def restricted_namespace(kube: Kube, name: str) -> Iterator[str]:
    """A namespace whose Pod Security admission enforces `restricted`: the app's and the Jobs' pods must meet it."""
    with temporary_namespace(kube, name, RESTRICTED) as created:
        yield created


def pod_condition(pod: Any, kind: str) -> Any:
    return next((c for c in pod.status.conditions or [] if c.type == kind), None)


def is_true(pod: Any, kind: str) -> bool:
    found = pod_condition(pod, kind)
    return found is not None and found.status == "True"


def held_at_the_gate(pod: Any) -> bool:
    """Its containers run (and answer a probe where there is one), but the pod is not Ready: only the gate holds it."""
    return is_true(pod, "ContainersReady") and not is_true(pod, "Ready")


def required(pod: Any) -> str:
    return str(pod.metadata.annotations[REQUIRES_ANNOTATION])


class GatedApp:
    """One Deployment (`app`, label app=`app`, maybe a Service of that name) and its SchemaMigration `schema`."""

    def __init__(self, kube: Kube, namespace: str, app: str, schema: str, documents: list[dict[str, Any]]) -> None:
        self.kube, self.namespace, self.app, self.schema = kube, namespace, app, schema
        self.documents = {d["kind"]: d for d in documents}

    def secrets(self, url: str, *names: str) -> None:
        for name in names:
            self.kube.core.create_namespaced_secret(
                self.namespace, {"metadata": {"name": name}, "stringData": {"url": url}}
            )

    def create(self, kind: str) -> None:
        create(self.kube, self.namespace, self.documents[kind])

    def migration(self) -> dict[str, Any]:
        return self.kube.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.schema)

    def patch_migration(self, spec: dict[str, Any]) -> None:
        patch = {"spec": spec}
        self.kube.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.schema, patch)

    def require(self, version: str, env: dict[str, str] | None = None) -> None:
        """The app's next release: code that needs schema `version` (and, where given, its env)."""
        template: dict[str, Any] = {"metadata": {"annotations": {REQUIRES_ANNOTATION: version}}}
        if env:
            container = self.documents["Deployment"]["spec"]["template"]["spec"]["containers"][0]["name"]
            variables = [{"name": k, "value": v} for k, v in env.items()]
            template["spec"] = {"containers": [{"name": container, "env": variables}]}
        self.kube.apps.patch_namespaced_deployment(self.app, self.namespace, {"spec": {"template": template}})

    def pods(self) -> list[Any]:
        return [
            p
            for p in self.kube.core.list_namespaced_pod(self.namespace, label_selector=f"app={self.app}").items
            if p.metadata.deletion_timestamp is None
        ]

    def rolled_out(self) -> bool:
        return deployment_rolled_out(self.kube.apps.read_namespaced_deployment(self.app, self.namespace))

    def released(self, version: str) -> bool:
        """Every enabled phase of `version` done (as of the current spec) and the app rolled out to it."""
        migration = self.migration()
        status = migration.get("status") or {}
        current = status.get("observedGeneration") == migration["metadata"]["generation"]
        done = current and status.get("targetVersion") == version and status.get("phase") == "Complete"
        return done and self.rolled_out()

    def _stalled(self) -> dict[str, Any]:
        found = condition(self.migration(), "Stalled")
        return found if found.get("status") == "True" else {}

    def assert_stalls_with(self, line: str, version: str) -> None:
        """The SchemaMigration ends Stalled with the tool's `line` in its message, and no pod of the
        release that needs `version` passes the gate."""
        stalled = wait_for("Stalled", self._stalled)
        print(f"Stalled: {stalled.get('reason')}: {stalled.get('message')}")
        assert line in stalled["message"], stalled
        time.sleep(5)  # time for a gate that would wrongly open
        waiting = [p for p in self.pods() if required(p) == version]
        assert waiting and not any(is_true(p, "Ready") for p in waiting), [p.status.conditions for p in waiting]

    def wait_held(self, count: int) -> None:
        """`count` pods run, held at the gate (before any SchemaMigration, say)."""
        wait_for(
            f"{count} pods held at the gate", lambda: len([p for p in self.pods() if held_at_the_gate(p)]) >= count
        )

    def assert_ready_after_expand(self) -> None:
        """Every pod became Ready after the last expand Job completed: the gate, not the pods, decided."""
        jobs = self.kube.batch.list_namespaced_job(self.namespace).items
        done = [j.status.completion_time for j in jobs if "-expand-" in j.metadata.name and j.status.completion_time]
        assert done, [j.metadata.name for j in jobs]
        opened = max(done).replace(microsecond=0)
        ready_since = [pod_condition(p, "Ready").last_transition_time for p in self.pods()]
        assert all(t >= opened for t in ready_since), (opened, ready_since)

    def service_address(self) -> tuple[str, int]:
        service = self.kube.core.read_namespaced_service(self.app, self.namespace)
        return service.spec.cluster_ip, service.spec.ports[0].port

    def get(self, path: str) -> dict[str, Any]:
        connection = http.client.HTTPConnection(*self.service_address(), timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200, body[:300]
            return dict(json.loads(body))
        finally:
            connection.close()

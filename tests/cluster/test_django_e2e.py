"""The Django example (examples/django) on the real node, the operator's way: its SchemaMigration runs
`python manage.py migrate` in the expand Job, the gated app's pods wait until it succeeded, a broken
migration stalls with Django's own error line and lets no new pod through, and a fixed spec goes on."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from devcluster.kube import Kube, deployment_rolled_out
from devcluster.postgres import in_cluster_url
from devcluster.shop import manifests
from devcluster.workloads import condition
from lockgate.controller.spec import GROUP, PLURAL, VERSION
from tests.django_support import DJANGO, EXPAND_MIGRATIONS
from tests.runner_support import query

APP_IMAGE = "lockgate-django:dev"
APP = "ledger-web"
SCHEMA = "ledger"
BROKEN_LINE = "RuntimeError: ledger_broken 0001: price list missing, cannot backfill notes"


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.5)
    return found


class Ledger:
    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self.documents = {d["kind"]: d for d in manifests(APP_IMAGE, APP_IMAGE, DJANGO / "k8s")}

    def create(self, kind: str) -> None:
        document = self.documents[kind]
        if kind == "SchemaMigration":
            self.kube.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, document)
        elif kind == "Deployment":
            self.kube.apps.create_namespaced_deployment(self.namespace, document)
        else:
            self.kube.core.create_namespaced_service(self.namespace, document)

    def migration(self) -> dict[str, Any]:
        return self.kube.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, SCHEMA)

    def patch_migration(self, spec: dict[str, Any]) -> None:
        patch = {"spec": spec}
        self.kube.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, SCHEMA, patch)

    def require(self, version: str) -> None:
        """The app's next release: code that needs schema `version`."""
        patch = {"metadata": {"annotations": {"lockgate.dev/requires-version": version}}}
        self.kube.apps.patch_namespaced_deployment(APP, self.namespace, {"spec": {"template": patch}})

    def pods(self) -> list[Any]:
        return [
            p
            for p in self.kube.core.list_namespaced_pod(self.namespace, label_selector=f"app={APP}").items
            if p.metadata.deletion_timestamp is None
        ]

    def rolled_out(self) -> bool:
        return deployment_rolled_out(self.kube.apps.read_namespaced_deployment(APP, self.namespace))

    def get(self, path: str) -> dict[str, Any]:
        service = self.kube.core.read_namespaced_service(APP, self.namespace)
        connection = http.client.HTTPConnection(service.spec.cluster_ip, service.spec.ports[0].port, timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200, body[:300]
            return dict(json.loads(body))
        finally:
            connection.close()


def pod_condition(pod: Any, kind: str) -> Any:
    return next((c for c in pod.status.conditions or [] if c.type == kind), None)


def is_true(pod: Any, kind: str) -> bool:
    found = pod_condition(pod, kind)
    return found is not None and found.status == "True"


def held_at_the_gate(pod: Any) -> bool:
    """Its server answers the probe, but the pod is not Ready: only the gate holds it."""
    return is_true(pod, "ContainersReady") and not is_true(pod, "Ready")


def expand_job_end(kube: Kube, namespace: str) -> datetime:
    jobs = kube.batch.list_namespaced_job(namespace).items
    done = [j.status.completion_time for j in jobs if "-expand-" in j.metadata.name and j.status.completion_time]
    assert done, [j.metadata.name for j in jobs]
    return max(done)


@pytest.mark.timeout(600)
def test_django_migrate_as_expand_gates_the_app_and_a_broken_migration_stalls_until_fixed(
    cluster: Any, kube: Kube, namespace: str, database_url: str, run_operator: Callable[..., Any]
) -> None:
    run_operator()
    url = in_cluster_url(database_url, cluster.node_ip)
    for secret in ("ledger-db", "ledger-app-db"):
        kube.core.create_namespaced_secret(namespace, {"metadata": {"name": secret}, "stringData": {"url": url}})
    ledger = Ledger(kube, namespace)

    # The app first: its pods start and answer their probe, but no SchemaMigration has expanded "1".
    ledger.create("Deployment")
    ledger.create("Service")
    wait_for("2 pods held at the gate", lambda: [p for p in ledger.pods() if held_at_the_gate(p)][1:])
    ledger.create("SchemaMigration")
    wait_for("release 1 complete", lambda: (ledger.migration().get("status") or {}).get("phase") == "Complete")
    wait_for("the app rolled out", ledger.rolled_out)
    opened = expand_job_end(kube, namespace)
    ready_since = [pod_condition(p, "Ready").last_transition_time for p in ledger.pods()]
    assert all(t >= opened.replace(microsecond=0) for t in ready_since), (opened, ready_since)
    served = ledger.get("/?text=first")
    assert served["seeds"] == 1 and served["notes"] == 1, served
    # The contract Job (LOCKGATE_PHASE=contract) dropped release 1's column.
    assert query(database_url, "SELECT app, name FROM django_migrations ORDER BY id") == [
        *EXPAND_MIGRATIONS,
        ("ledger_contract", "0001_drop_note_body"),
    ]

    # Version 2 with a migration that raises: Stalled, with Django's line, and the new pod stays out.
    broken = [{"name": "LEDGER_BROKEN_MIGRATION", "value": "1"}]
    ledger.patch_migration({"version": "2", "env": broken})
    ledger.require("2")
    stalled = wait_for("Stalled", lambda: (c := condition(ledger.migration(), "Stalled")).get("status") == "True" and c)
    print(f"Stalled: {stalled.get('reason')}: {stalled.get('message')}")
    assert BROKEN_LINE in stalled["message"], stalled
    time.sleep(5)  # time for a gate that would wrongly open
    pods = ledger.pods()
    waiting = [p for p in pods if p.metadata.annotations["lockgate.dev/requires-version"] == "2"]
    assert waiting and not any(is_true(p, "Ready") for p in waiting), [p.status.conditions for p in waiting]
    assert ledger.get("/?text=during")["notes"] == 2  # release 1's pods keep serving

    # The fix is a spec change (here: without the broken migration); the gate opens, the rollout ends.
    ledger.patch_migration({"env": []})
    wait_for("version 2 complete", lambda: (ledger.migration().get("status") or {}).get("contractedVersion") == "2")
    wait_for("the app rolled out to 2", ledger.rolled_out)
    pods = ledger.pods()
    assert {p.metadata.annotations["lockgate.dev/requires-version"] for p in pods} == {"2"}
    assert ledger.get("/?text=after")["seeds"] == 1  # the data migration ran once in all of this

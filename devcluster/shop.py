"""examples/shop on a cluster: its SchemaMigration, the real app behind a Service, the move from
release 1 to 2, and steady traffic at the Service that counts every failed request.

Shared by `make demo`, the zero-downtime end-to-end test and the Argo CD sync tests, so all show
the same release."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devcluster.binaries import REPO
from devcluster.kube import Kube, deployment_rolled_out
from lockgate.controller.spec import GROUP, PLURAL, VERSION

EXAMPLE = REPO / "examples" / "shop"
APP = "shop-web"
SCHEMA = "shop"
# The app's image as the tests name it (built by `make images`; on an existing cluster, loadable there).
APP_IMAGE = os.environ.get("LOCKGATE_TEST_APP_IMAGE", "lockgate-shop:dev")
WARM_UP_REQUESTS = 20


def manifests(lockgate_image: str, app_image: str, directory: Path = EXAMPLE) -> list[dict[str, Any]]:
    """An example's SchemaMigration and Deployment (the shop's unless `directory` names another) with
    the locally built images (pulled once from the cluster's registry)."""
    documents = []
    for name in ("schemamigration.yaml", "deployment.yaml"):
        documents += [d for d in yaml.safe_load_all((directory / name).read_text()) if d]
    return [with_local_images(d, lockgate_image, app_image) for d in documents]


def with_local_images(document: dict[str, Any], lockgate_image: str, app_image: str) -> dict[str, Any]:
    """A manifest of the examples run on the locally built images instead of the published ones."""
    if document["kind"] == "SchemaMigration":
        document["spec"].update(image=lockgate_image, imagePullPolicy="IfNotPresent")
    elif document["kind"] == "Deployment":
        for container in document["spec"]["template"]["spec"]["containers"]:
            container.update(image=app_image, imagePullPolicy="IfNotPresent")
    return document


def create(kube: Kube, namespace: str, document: dict[str, Any]) -> None:
    """One document of an example's manifests: its SchemaMigration, Deployment or Service."""
    kind = document["kind"]
    if kind == "SchemaMigration":
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, document)
    elif kind == "Deployment":
        kube.apps.create_namespaced_deployment(namespace, document)
    elif kind == "Service":
        kube.core.create_namespaced_service(namespace, document)
    else:
        raise ValueError(f"an example has a {kind}: teach devcluster.shop.create to create it")


def release_patch(release: str) -> dict[str, Any]:
    """What a new release of the app changes: its code (RELEASE) and the schema that code needs."""
    template = {
        "metadata": {"annotations": {"lockgate.dev/requires-version": release}},
        "spec": {"containers": [{"name": "web", "env": [{"name": "RELEASE", "value": release}]}]},
    }
    return {"spec": {"template": template}}


class Shop:
    """The example installed in one namespace of a cluster."""

    def __init__(self, kube: Kube, namespace: str, lockgate_image: str, app_image: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.lockgate_image = lockgate_image
        self.app_image = app_image

    def install(self, database_url: str) -> None:
        """Secrets, the scripts, the manifests."""
        self.create_secrets(database_url)
        core = self.kube.core
        scripts = {p.name: p.read_text() for p in sorted((EXAMPLE / "migrations").glob("*.sql"))}
        core.create_namespaced_config_map(self.namespace, {"metadata": {"name": "shop-migrations"}, "data": scripts})
        for document in manifests(self.lockgate_image, self.app_image):
            create(self.kube, self.namespace, document)

    def create_secrets(self, database_url: str) -> None:
        """What never lives in Git: the database URLs (one for both here; give the app a DML-only user in production)."""
        for secret in ("shop-db", "shop-app-db"):
            self.kube.core.create_namespaced_secret(
                self.namespace, {"metadata": {"name": secret}, "stringData": {"url": database_url}}
            )

    def move_to(self, release: str) -> None:
        """Release N: the SchemaMigration first, then the app (as an Argo CD sync wave would)."""
        patch = {"spec": {"version": release}}
        self.kube.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, SCHEMA, patch)
        self.kube.apps.patch_namespaced_deployment(APP, self.namespace, release_patch(release))

    def migration(self) -> dict[str, Any]:
        return self.kube.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, SCHEMA)

    def deployment(self) -> Any:
        return self.kube.apps.read_namespaced_deployment(APP, self.namespace)

    def released(self, release: str) -> bool:
        """Every phase of `release` done and the app rolled out to it; raises if the migration failed."""
        status = self.migration().get("status") or {}
        if status.get("phase") == "Failed":
            raise RuntimeError(f"SchemaMigration {SCHEMA} failed: {status.get('conditions')}")
        complete = status.get("contractedVersion") == release and status.get("phase") == "Complete"
        return complete and deployment_rolled_out(self.deployment())

    def service_address(self) -> tuple[str, int]:
        """The Service's ClusterIP: kube-proxy's rules route it from this host as from any pod."""
        service = self.kube.core.read_namespaced_service(APP, self.namespace)
        return service.spec.cluster_ip, service.spec.ports[0].port


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 180) -> Any:
    """What `predicate` returns once it is truthy, polled every half second."""
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.5)
    return found


def start_traffic(shop: Shop) -> Traffic:
    """Traffic once the Service answers: the first requests prove the path works before counting matters."""
    traffic = Traffic(*shop.service_address()).start()
    wait_for("the Service to serve", lambda: traffic.report.served >= WARM_UP_REQUESTS, timeout=60)
    return traffic


@dataclass
class TrafficReport:
    served: int
    failed: int
    failures: Counter[str] = field(default_factory=Counter)  # reason -> count

    def summary(self) -> str:
        reasons = "; ".join(f"{n} x {reason}" for reason, n in self.failures.most_common(5))
        return f"{self.served} requests served, {self.failed} failed" + (f" ({reasons})" if reasons else "")


class Traffic:
    """Steady requests at an app's Service from a background thread: GETs and POSTs of `path` (the
    shop's by default), each on a new connection (as a fresh client would), so every routing change
    is exercised."""

    def __init__(
        self, host: str, port: int, per_second: float = 20.0, timeout: float = 5.0, path: str = "/customers"
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self.interval = 1.0 / per_second
        self.timeout = timeout
        self.report = TrafficReport(0, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> TrafficReport:
        self._stop.set()
        self._thread.join(self.timeout + 5)
        return self.report

    def _run(self) -> None:
        sent = 0
        while not self._stop.is_set():
            method = "POST" if sent % 4 == 3 else "GET"  # mostly reads, some writes
            failure = self._request(method)
            sent += 1
            if failure:
                self.report.failed += 1
                self.report.failures[failure] += 1
            else:
                self.report.served += 1
            self._stop.wait(self.interval)

    def _request(self, method: str) -> str | None:
        """None when served, else why not."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            body = json.dumps({"name": f"Customer {time.time():.3f}"}) if method == "POST" else None
            connection.request(method, self.path, body=body, headers={"Connection": "close"})
            response = connection.getresponse()
            payload = response.read()
            if response.status >= 300:
                return f"{method} {response.status}: {payload[:120].decode(errors='replace')}"
            return None
        except (OSError, http.client.HTTPException) as exc:
            return f"{method}: {type(exc).__name__}: {exc}"
        finally:
            connection.close()

"""What the tests, the demo and the benchmarks run on a cluster: the operator command, a gated
Deployment, and the reads they share (no pytest here: the demo and benchmarks import it too)."""

from __future__ import annotations

import sys
from typing import Any

from devcluster.binaries import REPO
from devcluster.images.recipes import PAUSE_IMAGE
from devcluster.postgres import free_port
from lockgate.controller.spec import GATE_CONDITION

CRD = REPO / "crds" / "lockgate.dev_schemamigrations.yaml"
IDLE_IMAGE = PAUSE_IMAGE  # an app that runs for ever: what the gate holds or lets through


def operator_command(namespace: str | None, metrics_port: int = 0) -> list[str]:
    """`lockgate run` for one namespace (None: all of them), on a free health port (several may run on one host)."""
    return [
        sys.executable,
        "-m",
        "lockgate",
        "run",
        *(["-n", namespace] if namespace else []),
        "--health-port",
        str(free_port()),
        "--metrics-port",
        str(metrics_port),
    ]


def gated_deployment(
    name: str, schema: str, requires: str, replicas: int = 2, image: str = IDLE_IMAGE
) -> dict[str, Any]:
    """An app whose rollout waits at the schema gate: label, requires-version, readiness gate, maxUnavailable 0."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": {"app": name, "lockgate.dev/schema": schema},
                    "annotations": {"lockgate.dev/requires-version": requires},
                },
                "spec": {
                    "readinessGates": [{"conditionType": GATE_CONDITION}],
                    "containers": [{"name": "app", "image": image}],
                },
            },
        },
    }


def require_version(kube: Any, namespace: str, deployment: str, version: str) -> Any:
    """Roll the app out to code that needs schema `version` (what a new release of it does)."""
    patch = {"spec": {"template": {"metadata": {"annotations": {"lockgate.dev/requires-version": version}}}}}
    return kube.apps.patch_namespaced_deployment(deployment, namespace, patch)


def condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (body.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})

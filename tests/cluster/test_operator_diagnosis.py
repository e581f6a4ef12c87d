"""A migration Job that cannot start its container says why, on the real node: each broken spec
ends in a Stalled condition naming the cause and the fix within about 30 s (never a silent
"Job is running"), and the condition clears once the cause is fixed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from devcluster.kube import Kube
from devcluster.workloads import condition
from lockgate.controller.spec import GROUP, PLURAL, VERSION
from tests.operator_fixtures import Migrations

pytestmark = pytest.mark.timeout(300, func_only=True)
DIAGNOSED_WITHIN = 45  # seconds: the issue asks for about 30; the kubelet's first try takes some


def stuck(body: dict[str, Any]) -> bool:
    return condition(body, "Stalled").get("reason") == "JobCannotStart"


def diagnosed(migrations: Migrations, name: str) -> str:
    started = time.monotonic()
    body = migrations.wait(name, stuck, timeout=DIAGNOSED_WITHIN)
    message = condition(body, "Stalled")["message"]
    assert condition(body, "Ready")["status"] == "False"
    assert body["status"]["phase"] == "Expanding" and time.monotonic() - started < DIAGNOSED_WITHIN
    return str(message)


def create_secret(kube: Kube, namespace: str, name: str, data: dict[str, str]) -> None:
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "stringData": data})


# (what is broken, spec overrides, words the Stalled message must hold, the fix)
Fix = Callable[[Kube, str], None]
BROKEN: list[tuple[str, dict[str, Any], tuple[str, ...], Fix | None]] = [
    (
        "missing-secret",
        {"database": {"urlFrom": {"secretKeyRef": {"name": "nowhere", "key": "url"}}}},
        ("CreateContainerConfigError", '"nowhere" not found', "spec.database.urlFrom"),
        lambda kube, ns: create_secret(kube, ns, "nowhere", {"url": "unused"}),
    ),
    (
        "missing-key",
        {"database": {"urlFrom": {"secretKeyRef": {"name": "keyless", "key": "url"}}}},
        ("CreateContainerConfigError", "url", "keyless"),
        None,
    ),
    (
        "missing-env-secret",
        {"env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "no-token", "key": "t"}}}]},
        ("CreateContainerConfigError", '"no-token" not found'),
        None,
    ),
    (
        "missing-configmap",
        {"migrations": {"configMap": {"name": "no-scripts"}}},
        ("FailedMount", '"no-scripts" not found', "spec.migrations.configMap"),
        lambda kube, ns: kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "no-scripts"}}),
    ),
    (
        "missing-serviceaccount",
        {"podTemplate": {"serviceAccountName": "no-such-account"}},
        ("FailedCreate", "no-such-account", "serviceAccountName"),
        None,
    ),
    (
        "no-node-matches",
        {"podTemplate": {"nodeSelector": {"disk": "none-has-it"}}},
        ("Unschedulable", "node", "nodeSelector"),
        None,
    ),
    (
        "image-never-pulled",
        {"image": "registry.invalid/never-loaded:1", "imagePullPolicy": "Never"},
        ("ErrImageNeverPull", "imagePullPolicy"),
        None,
    ),
]


@pytest.mark.parametrize(("case", "spec", "words", "fix"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_job_that_cannot_start_stalls_with_the_cause_and_clears_once_fixed(
    kube: Kube,
    namespace: str,
    migrations: Migrations,
    run_operator: Any,
    case: str,
    spec: dict[str, Any],
    words: tuple[str, ...],
    fix: Fix | None,
) -> None:
    create_secret(kube, namespace, "keyless", {"other": "x"})
    run_operator()
    # `true` stands in for the runner: these Jobs are about starting a container, not migrating.
    stand_in = {"expand": {"command": ["true"]}, "background": {"enabled": False}, "contract": {"enabled": False}}
    spec = dict(spec)
    config_map = spec.pop("migrations", {}).get("configMap", {}).get("name") or migrations.scripts(f"{case}-v1", {})
    body = migrations.body(case, "1", config_map, image=spec.pop("image", None), **(stand_in | spec))
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    message = diagnosed(migrations, case)
    for word in words:
        assert word in message, message
    if fix is None:
        return
    fix(kube, namespace)
    body = migrations.wait(case, lambda b: condition(b, "Ready").get("status") == "True", timeout=150)
    assert condition(body, "Stalled")["status"] == "False"

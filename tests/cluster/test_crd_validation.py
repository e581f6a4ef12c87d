"""The CRD on a real API server: each malformed SchemaMigration is refused with a message that
names the field and says what to change; valid ones, and the shipped examples, are accepted.

The CRD is cluster-scoped and shared with every other test run on the cluster, so this module
installs its own copy under a group of its own: other runs cannot swap it mid-test, and this
one changes nothing they see."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.rest import ApiException

from devcluster.kube import Kube, temporary_namespace, watch_until
from devcluster.workloads import CRD
from lockgate.controller.spec import KIND, PLURAL, VERSION

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = [
    REPO / "examples/shop/schemamigration.yaml",
    REPO / "examples/argocd/shop/schemamigration.yaml",
    REPO / "examples/tenants/schemamigration.yaml",
    REPO / "examples/tenants/schemamigration-databases.yaml",
    REPO / "examples/tenants/schemamigration-query.yaml",
]
MINIMAL = {
    "version": "1",
    "image": "registry/app:1",
    "database": {"urlFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
}


@pytest.fixture(scope="module")
def group(kube: Kube) -> Iterator[str]:
    """The project's CRD under a group of its own, Established; deleted afterwards."""
    manifest = yaml.safe_load(CRD.read_text())
    group = f"crdtest-{uuid.uuid4().hex[:8]}.lockgate.dev"
    manifest["spec"]["group"] = group
    manifest["metadata"]["name"] = f"{PLURAL}.{group}"
    kube.apiextensions.create_custom_resource_definition(manifest)
    try:
        watch_until(
            kube.apiextensions.list_custom_resource_definition,
            lambda c: any(x.type == "Established" and x.status == "True" for x in c.status.conditions or []),
            field_selector=f"metadata.name={PLURAL}.{group}",
        )
        yield group
    finally:
        kube.apiextensions.delete_custom_resource_definition(f"{PLURAL}.{group}")


@pytest.fixture(scope="module")
def space(kube: Kube) -> Iterator[str]:
    with temporary_namespace(kube, f"crd-validation-{uuid.uuid4().hex[:6]}") as name:
        yield name


def create(kube: Kube, group: str, namespace: str, spec: dict[str, Any], strict: bool = False) -> None:
    """A server-side dry run of creating the object: validated and defaulted, never stored."""
    body = {"apiVersion": f"{group}/{VERSION}", "kind": KIND, "metadata": {"name": "m"}, "spec": spec}
    kube.custom.create_namespaced_custom_object(
        group, VERSION, namespace, PLURAL, body, dry_run="All", field_validation="Strict" if strict else None
    )


def with_change(change: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(MINIMAL) | copy.deepcopy(change)


def pod(**template: Any) -> dict[str, Any]:
    return {"podTemplate": template}


def env(value_from: Any) -> dict[str, Any]:
    return {"env": [{"name": "TOKEN", "valueFrom": value_from}]}


# (what is wrong, the change, the field the message must name, what the message must say to change)
# fmt: off
REFUSED = [
    ("runAsUser negative", pod(securityContext={"runAsUser": -1}), "spec.podTemplate.securityContext.runAsUser", "greater than or equal to 0"),
    ("runAsUser over the uid range", pod(securityContext={"runAsUser": 2**31}), "spec.podTemplate.securityContext.runAsUser", "less than or equal to 2147483647"),
    ("runAsUser a string", pod(securityContext={"runAsUser": "root"}), "spec.podTemplate.securityContext.runAsUser", "must be of type integer"),
    ("capabilities a string", pod(securityContext={"capabilities": "ALL"}), "spec.podTemplate.securityContext.capabilities", "must be of type object"),
    ("capabilities.drop a string", pod(securityContext={"capabilities": {"drop": "ALL"}}), "spec.podTemplate.securityContext.capabilities.drop", "must be of type array"),
    ("privileged a string", pod(securityContext={"privileged": "yes"}), "spec.podTemplate.securityContext.privileged", "must be of type boolean"),
    ("seccompProfile.type unknown", pod(securityContext={"seccompProfile": {"type": "Default"}}), "spec.podTemplate.securityContext.seccompProfile.type", 'supported values: "RuntimeDefault", "Localhost", "Unconfined"'),
    ("Localhost seccomp without a profile", pod(securityContext={"seccompProfile": {"type": "Localhost"}}), "spec.podTemplate.securityContext.seccompProfile", "set localhostProfile when, and only when, type is Localhost"),
    ("procMount unknown", pod(securityContext={"procMount": "Masked"}), "spec.podTemplate.securityContext.procMount", 'supported values: "Default", "Unmasked"'),
    ("fsGroup a string", pod(podSecurityContext={"fsGroup": "users"}), "spec.podTemplate.podSecurityContext.fsGroup", "must be of type integer"),
    ("fsGroupChangePolicy unknown", pod(podSecurityContext={"fsGroupChangePolicy": "Sometimes"}), "spec.podTemplate.podSecurityContext.fsGroupChangePolicy", 'supported values: "OnRootMismatch", "Always"'),
    ("sysctl without a value", pod(podSecurityContext={"sysctls": [{"name": "net.core.somaxconn"}]}), "spec.podTemplate.podSecurityContext.sysctls[0].value", "Required value"),
    ("resources a string", pod(resources="256Mi"), "spec.podTemplate.resources", "must be of type object"),
    ("a limit that is no quantity", pod(resources={"limits": {"memory": "lots"}}), "spec.podTemplate.resources.limits.memory", "should match"),
    ("a request that is a list", pod(resources={"requests": {"cpu": ["1"]}}), "spec.podTemplate.resources.requests.cpu", "must be of type"),
    ("a request over its limit", pod(resources={"requests": {"memory": "1Gi"}, "limits": {"memory": "256Mi", "cpu": 1}}), "spec.podTemplate.resources", "each request must be at most its limit; lower the request or raise the limit"),
    ("tolerations an object", pod(tolerations={"key": "db"}), "spec.podTemplate.tolerations", "must be of type array"),
    ("toleration operator unknown", pod(tolerations=[{"key": "db", "operator": "Maybe"}]), "spec.podTemplate.tolerations[0].operator", 'supported values: "Exists", "Equal"'),
    ("toleration effect unknown", pod(tolerations=[{"key": "db", "operator": "Exists", "effect": "Never"}]), "spec.podTemplate.tolerations[0].effect", 'supported values: "NoSchedule", "PreferNoSchedule", "NoExecute"'),
    ("Exists with a value", pod(tolerations=[{"key": "db", "operator": "Exists", "value": "x"}]), "spec.podTemplate.tolerations[0]", "remove value or use operator Equal"),
    ("no key without Exists", pod(tolerations=[{"operator": "Equal", "value": "x"}]), "spec.podTemplate.tolerations[0]", "without a key must have operator Exists"),
    ("tolerationSeconds without NoExecute", pod(tolerations=[{"key": "db", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}]), "spec.podTemplate.tolerations[0]", "tolerationSeconds needs effect NoExecute"),
    ("nodeAffinity a string", pod(affinity={"nodeAffinity": "db"}), "spec.podTemplate.affinity.nodeAffinity", "must be of type object"),
    ("affinity weight 0", pod(affinity={"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 0, "podAffinityTerm": {"topologyKey": "zone"}}]}}), "spec.podTemplate.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight", "greater than or equal to 1"),
    ("no nodeSelectorTerms", pod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}), "spec.podTemplate.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms", "Required value"),
    ("a pod label value too long", pod(labels={"team": "x" * 64}), "spec.podTemplate.labels.team", "may not be more than 63 bytes"),
    ("serviceAccountName with capitals", pod(serviceAccountName="Migrator"), "spec.podTemplate.serviceAccountName", "should match"),
    ("empty valueFrom", env({}), "spec.env[0].valueFrom", "set exactly one of secretKeyRef, configMapKeyRef, fieldRef or resourceFieldRef"),
    ("two valueFrom sources", env({"fieldRef": {"fieldPath": "metadata.name"}, "configMapKeyRef": {"name": "c", "key": "k"}}), "spec.env[0].valueFrom", "set exactly one of"),
    ("secretKeyRef without a key", env({"secretKeyRef": {"name": "s"}}), "spec.env[0].valueFrom.secretKeyRef.key", "Required value"),
    ("fieldRef without a path", env({"fieldRef": {}}), "spec.env[0].valueFrom.fieldRef.fieldPath", "Required value"),
    ("ttlSecondsAfterFinished over int32", {"ttlSecondsAfterFinished": 2**31}, "spec.ttlSecondsAfterFinished", "less than or equal to 2147483647"),
    ("ttlSecondsAfterFinished negative", {"ttlSecondsAfterFinished": -1}, "spec.ttlSecondsAfterFinished", "greater than or equal to 0"),
    ("activeDeadlineSeconds 0", {"activeDeadlineSeconds": 0}, "spec.activeDeadlineSeconds", "greater than or equal to 1"),
    ("activeDeadlineSeconds over int64", {"activeDeadlineSeconds": 2**63}, "spec.activeDeadlineSeconds", "must be of type integer"),
    ("a delay over a year", {"contract": {"delay": "8761h"}}, "spec.contract.delay", "must be at most 8760h (one year); shorten it"),
    ("a delay that overflows", {"contract": {"delay": "99999999999h"}}, "spec.contract.delay", "must be at most 8760h (one year); shorten it"),
    ("a delay far too long to read", {"contract": {"delay": "1h" * 17}}, "spec.contract.delay", "may not be more than 32 bytes"),
    ("a delay with no unit", {"contract": {"delay": "10"}}, "spec.contract.delay", "should match"),
    ("a tenant schema listed twice", {"targets": {"schemas": ["a", "b", "a"]}}, "spec.targets.schemas[2]", 'Duplicate value: "a"'),
    ("a tenant Secret listed twice", {"targets": {"databases": {"secrets": ["t1", "t1"]}}}, "spec.targets.databases.secrets[1]", 'Duplicate value: "t1"'),
    ("schemas and databases both", {"targets": {"schemas": ["a"], "databases": {"secrets": ["t1"]}}}, "spec.targets", "one of them"),
    ("spec.database beside tenant databases", {"targets": {"databases": {"secrets": ["t1"]}}}, "spec.database", "remove spec.database"),
    ("a tenant schema name that needs quoting", {"targets": {"schemas": ["a-b"]}}, "spec.targets.schemas[0]", "should match"),
    ("no tenant at all", {"targets": {"schemas": []}}, "spec.targets.schemas", "should have at least 1 items"),
    ("a canary of every target", {"targets": {"schemas": ["a", "b"], "canary": {"count": 2}}}, "spec.targets.canary.count", "must be below the number of targets"),
    ("schemas and a schemaQuery both", {"targets": {"schemas": ["a"], "schemaQuery": {"sql": "SELECT 'a'"}}}, "spec.targets", "targets.schemaQuery (a query listing them)"),
    ("a query canary of every index", {"targets": {"schemaQuery": {"sql": "SELECT 'a'", "indexes": 2}, "canary": {"count": 2}}}, "spec.targets.canary.count", "must be below schemaQuery.indexes"),
    ("a query canary of every default index", {"targets": {"schemaQuery": {"sql": "SELECT 'a'"}, "maxParallel": 1, "canary": {"count": 2}}}, "spec.targets.canary.count", "must be below schemaQuery.indexes"),
    ("a query canary by label", {"targets": {"schemaQuery": {"sql": "SELECT 'a'"}, "canary": {"selector": {"matchLabels": {"c": "y"}}}}}, "spec.targets.canary.selector", "schemas have no labels"),
    ("perPod with a schemaQuery", {"targets": {"schemaQuery": {"sql": "SELECT 'a'"}, "perPod": 5}}, "spec.targets.perPod", "no meaning with schemaQuery"),
    ("a schemaQuery of no indexes", {"targets": {"schemaQuery": {"sql": "SELECT 'a'", "indexes": 0}}}, "spec.targets.schemaQuery.indexes", "greater than or equal to 1"),
    ("a canary of no target", {"targets": {"schemas": ["a", "b"], "canary": {"count": 0}}}, "spec.targets.canary.count", "greater than or equal to 1"),
    ("a canary by neither count nor label", {"targets": {"schemas": ["a", "b"], "canary": {"requireApproval": True}}}, "spec.targets.canary", "set canary.count (the first targets) or canary.selector (by label), one of them"),
    ("a canary by label over schemas", {"targets": {"schemas": ["a", "b"], "canary": {"selector": {"matchLabels": {"c": "y"}}}}}, "spec.targets.canary.selector", "schemas have no labels"),
    ("a qualified history table for schemas", {"targets": {"schemas": ["a"]}, "database": {"urlFrom": {"secretKeyRef": {"name": "db", "key": "url"}}, "historyTable": "app.history"}}, "spec.database.historyTable", "each tenant's schema keeps its own"),
]
# fmt: on


@pytest.mark.parametrize(("change", "field", "hint"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_a_malformed_spec_is_refused_naming_the_field_and_the_fix(
    kube: Kube, group: str, space: str, change: dict[str, Any], field: str, hint: str
) -> None:
    with pytest.raises(ApiException) as refused:
        create(kube, group, space, with_change(change))
    message = json.loads(refused.value.body)["message"]
    assert refused.value.status == 422 and f"{field}:" in message and hint in message, message


def test_a_database_per_tenant_needs_no_spec_database_but_one_of_them_is_required(
    kube: Kube, group: str, space: str
) -> None:
    tenants = {key: value for key, value in MINIMAL.items() if key != "database"}
    create(kube, group, space, tenants | {"targets": {"databases": {"secrets": ["t1-db", "t2-db"]}, "maxFailed": 1}})
    with pytest.raises(ApiException) as refused:
        create(kube, group, space, tenants)
    message = json.loads(refused.value.body)["message"]
    assert "spec.database: Invalid value" in message and "set spec.database, or spec.targets.databases" in message


def test_unknown_fields_in_a_pod_override_are_refused_under_strict_validation(
    kube: Kube, group: str, space: str
) -> None:
    """kubectl validates strictly by default: a typo is refused, not silently pruned."""
    with pytest.raises(ApiException) as refused:
        create(kube, group, space, with_change(pod(securityContext={"runAsUsr": 1000})), strict=True)
    message = json.loads(refused.value.body)["message"]
    assert 'unknown field "spec.podTemplate.securityContext.runAsUsr"' in message, message


ACCEPTED = [
    pod(
        securityContext={
            "runAsUser": 1000,
            "runAsGroup": 0,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
            "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/migrate.json"},
            "appArmorProfile": {"type": "RuntimeDefault"},
        },
        podSecurityContext={
            "fsGroup": 2000,
            "fsGroupChangePolicy": "OnRootMismatch",
            "supplementalGroups": [3000],
            "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}],
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        resources={"limits": {"cpu": 1, "memory": "256Mi"}, "requests": {"cpu": "100m", "ephemeral-storage": "1e9"}},
        tolerations=[
            {"key": "db", "operator": "Exists"},
            {"operator": "Exists"},
            {"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoExecute", "tolerationSeconds": 30},
            {"key": "pool", "value": "db", "effect": "NoSchedule"},
        ],
        affinity={
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["db"]}]}]
                },
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 50, "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}}
                ],
            },
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {}}}
                ]
            },
        },
        serviceAccountName="migrator",
        labels={"team": "db"},
    ),
    {
        "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token", "optional": True}}},
            {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
            {"name": "D", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "E", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        ]
    },
    {"ttlSecondsAfterFinished": 2**31 - 1, "activeDeadlineSeconds": 2**63 - 1},
    {"ttlSecondsAfterFinished": 0},
    {"contract": {"delay": "8760h"}},
    {"contract": {"delay": "1.5h"}},
    {"contract": {"delay": "500ms"}},
    {"contract": {"delay": "10m0.5s"}},
    {"targets": {"schemaQuery": {"sql": "SELECT 'a'", "indexes": 4}, "canary": {"count": 3, "requireApproval": True}}},
    {"targets": {"schemaQuery": {"sql": "SELECT 'a'"}, "canary": {"count": 7}}},  # 2 × maxParallel's default 4
]


@pytest.mark.parametrize("change", ACCEPTED)
def test_a_valid_spec_is_accepted(kube: Kube, group: str, space: str, change: dict[str, Any]) -> None:
    create(kube, group, space, with_change(change), strict=True)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(REPO)))
def test_the_shipped_examples_are_accepted(kube: Kube, group: str, space: str, path: Path) -> None:
    create(kube, group, space, yaml.safe_load(path.read_text())["spec"], strict=True)

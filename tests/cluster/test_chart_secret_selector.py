"""spec.targets.databases.selector under the chart's RBAC, on the real control plane: without
rbac.secretSelector the SchemaMigration says which value to set and goes on once granted; with it,
the API server's audit log shows the operator listing tenant Secrets by name and labels only."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devcluster.kube import Kube, watch_until
from devcluster.postgres import in_cluster_url
from tests.chart_release import (
    GROUP,
    MIGRATION_READY_SECONDS,
    PLURAL,
    SCRIPTS,
    VERSION,
    Release,
    assert_no_password_in,
    tables,
    wait_ready,
)
from tests.health_support import kstatus


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

"""examples/argocd/shop and the commits the Argo CD sync tests derive from it (tests/argocd_support.py)."""

from __future__ import annotations

import yaml

from devcluster.shop import EXAMPLE as SHOP
from tests.argocd_support import BROKEN_SCRIPT, PATH, application, broken, example, of_kind, release_1, tree

DOCUMENTS = example("lockgate:dev", "lockgate-shop:dev")


def test_the_example_carries_the_shop_scripts_in_a_configmap_of_its_release() -> None:
    config_map = of_kind(DOCUMENTS, "ConfigMap")
    assert config_map["data"] == {p.name: p.read_text() for p in (SHOP / "migrations").glob("*.sql")}
    assert config_map["immutable"] is True
    spec = of_kind(DOCUMENTS, "SchemaMigration")["spec"]
    assert spec["version"] == "2" and spec["migrations"]["configMap"]["name"] == config_map["metadata"]["name"]


def test_the_waves_order_scripts_schema_then_app() -> None:
    waves = {d["kind"]: d["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] for d in DOCUMENTS}
    assert waves == {"ConfigMap": "-2", "SchemaMigration": "-1", "Deployment": "0", "Service": "0"}


def test_release_1_is_version_1_everywhere() -> None:
    older = release_1(DOCUMENTS)
    assert sorted(of_kind(older, "ConfigMap")["data"]) == ["A1__seed_customers.sql", "V1__create_customers.sql"]
    spec = of_kind(older, "SchemaMigration")["spec"]
    assert spec["version"] == "1" and spec["migrations"]["configMap"]["name"] == "shop-migrations-1"
    template = of_kind(older, "Deployment")["spec"]["template"]
    assert template["metadata"]["annotations"]["lockgate.dev/requires-version"] == "1"
    assert {"name": "RELEASE", "value": "1"} in template["spec"]["containers"][0]["env"]
    assert of_kind(DOCUMENTS, "SchemaMigration")["spec"]["version"] == "2"  # derived, not changed in place


def test_the_broken_release_is_a_configmap_of_its_own() -> None:
    bad = broken(DOCUMENTS)
    config_map = of_kind(bad, "ConfigMap")
    assert config_map["data"]["V2__add_email.sql"] == BROKEN_SCRIPT
    assert config_map["metadata"]["name"] != of_kind(DOCUMENTS, "ConfigMap")["metadata"]["name"]
    assert of_kind(bad, "SchemaMigration")["spec"]["migrations"]["configMap"]["name"] == config_map["metadata"]["name"]


def test_the_tree_holds_one_manifest_per_object() -> None:
    files = tree(DOCUMENTS)
    assert all(path.startswith(f"{PATH}/") for path in files)
    assert [yaml.safe_load(text) for text in files.values()] == DOCUMENTS


def test_the_application_syncs_itself_and_retries_with_the_newest_commit() -> None:
    app = application("shop", "file:///srv/shop-deploy", "shop-ns")
    assert app["spec"]["source"] == {"repoURL": "file:///srv/shop-deploy", "targetRevision": "main", "path": PATH}
    assert app["spec"]["destination"]["namespace"] == "shop-ns"
    policy = app["spec"]["syncPolicy"]
    assert policy["automated"]["prune"] is True and policy["retry"]["refresh"] is True

"""A real Argo CD (application controller, repo-server, Redis) syncs the shop of examples/argocd from a
local Git repository: release 1 -> 2 is a commit. The SchemaMigration's wave (-1) holds the app's
wave (0) until lockgate reports Ready, through the health check of deploy/argocd/argocd-cm.yaml; the
new pods roll through the gate under steady traffic; contract runs after the rollout, once the old pods
are gone, where Argo CD's PostSync hook runs while they still terminate. A broken migration stops the
sync at wave -1, and a commit that fixes it lets the sync finish."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from devcluster.argocd import Applications, ArgoCD, GitRepo, resource_status, synced, wait_app
from devcluster.kube import Kube
from devcluster.postgres import in_cluster_url
from devcluster.shop import APP, APP_IMAGE, SCHEMA, Shop, start_traffic, wait_for
from devcluster.workloads import condition
from lockgate.shared.timestamps import parse_time
from tests.argocd_support import (
    BROKEN_CAUSE,
    HOOK,
    PodEvents,
    application,
    broken,
    example,
    release_1,
    tree,
    with_post_sync_hook,
)

SYNC_TIMEOUT = 240.0


@dataclass
class ShopRepo:
    """The shop's Git repository, the Application that syncs it, and the shop it installs."""

    repo: GitRepo
    apps: Applications
    name: str
    shop: Shop
    release_2: list[dict[str, Any]]

    def push(self, documents: list[dict[str, Any]], message: str) -> str:
        """Commit, then tell Argo CD as its Git webhook would; returns the commit's SHA."""
        revision = self.repo.commit(tree(documents), message)
        self.apps.refresh(self.name)
        return revision

    def wait_synced(self, revision: str) -> dict[str, Any]:
        return wait_app(self.apps, self.name, f"synced to {revision[:8]}", lambda a: synced(a, revision), SYNC_TIMEOUT)


@pytest.fixture
def on_release_1(
    argocd: ArgoCD,
    cluster: Any,
    kube: Kube,
    namespace: str,
    database_url: str,
    run_operator: Callable[..., Any],
    tmp_path: Path,
) -> Iterator[ShopRepo]:
    """Release 1 synced by Argo CD from its first commit, migrated and rolled out."""
    run_operator()
    shop = Shop(kube, namespace, cluster.real_image, APP_IMAGE)
    shop.create_secrets(in_cluster_url(database_url, cluster.node_ip))
    repo, apps = GitRepo(tmp_path / "shop-deploy"), Applications(kube)
    first = repo.commit(tree(release_1(example(cluster.real_image, APP_IMAGE))), "shop: release 1")
    apps.create(application(namespace, repo.url, namespace))
    shop_repo = ShopRepo(repo, apps, namespace, shop, example(cluster.real_image, APP_IMAGE))
    try:
        shop_repo.wait_synced(first)
        wait_for("release 1", lambda: shop.released("1"))
        yield shop_repo
    finally:
        apps.delete(namespace)  # no finalizer: the namespace's deletion takes what it synced


def history(shop: Shop, phase: str, version: str) -> dict[str, Any]:
    """The SchemaMigration's record of its succeeded `phase` Job for `version`."""
    entries = (shop.migration().get("status") or {}).get("history") or []
    return next(e for e in entries if (e["phase"], e["version"], e.get("result")) == (phase, version, "Succeeded"))


def at(entry: dict[str, Any], key: str) -> datetime:
    moment = parse_time(entry.get(key))
    assert moment is not None, entry
    return moment


def pods(shop: Shop) -> list[Any]:
    """The app's pods, but those on their way out."""
    listed = shop.kube.core.list_namespaced_pod(shop.namespace, label_selector=f"app={APP}").items
    return [p for p in listed if p.metadata.deletion_timestamp is None]


def requires(meta: Any) -> str:
    """The schema version a pod's (or a pod template's) code needs."""
    return str(meta.annotations["lockgate.dev/requires-version"])


@pytest.mark.timeout(600)
def test_a_commit_releases_the_shop_through_the_waves_under_traffic(on_release_1: ShopRepo) -> None:
    shop = on_release_1.shop
    traffic = start_traffic(shop)
    timeline = PodEvents(shop.kube, shop.namespace).start()
    release_2 = with_post_sync_hook(on_release_1.release_2, shop.lockgate_image)
    revision = on_release_1.push(release_2, "shop: release 2")
    app = on_release_1.wait_synced(revision)
    wait_for("contract of release 2", lambda: shop.released("2"))
    report = traffic.stop()
    timeline.stop()
    print(f"release 1 -> 2 by a commit, synced by Argo CD, under traffic: {report.summary()}")
    assert report.failed == 0, report.summary()
    assert report.served > 100, report.summary()

    # Wave 0 waited for wave -1: Argo CD created release 2's ReplicaSet only once expand 2 had succeeded.
    expanded = at(history(shop, "expand", "2"), "completionTime")
    sets = shop.kube.apps.list_namespaced_replica_set(shop.namespace, label_selector=f"app={APP}").items
    created = [s.metadata.creation_timestamp for s in sets if requires(s.spec.template.metadata) == "2"]
    assert len(created) == 1 and created[0] >= expanded, (created, expanded)
    # Every pod rolled through the gate, and contract started after the last of them.
    assert {requires(p.metadata) for p in pods(shop)} == {"2"}
    for pod in pods(shop):
        gate = next(c for c in pod.status.conditions if c.type == "lockgate.dev/schema-ready")
        assert gate.status == "True", gate
    last_pod = max(p.metadata.creation_timestamp for p in pods(shop))
    assert at(history(shop, "contract", "2"), "startTime") >= last_pod
    # Argo CD's PostSync hook ran while pods of release 1 were still there (terminating: the Deployment
    # was already Healthy); lockgate's contract started only once the last of them was gone.
    hook = timeline.first("ADDED", f"job {HOOK}")
    gone = timeline.last("DELETED", "release 1")
    contract = timeline.first("ADDED", f"job {SCHEMA}-contract-2")
    print(
        "pod events:", *(f"{i:3} {t:8} {role:28} {name}" for i, (t, name, role) in enumerate(timeline.events)), sep="\n"
    )
    assert hook < gone < contract, (hook, gone, contract)
    # Argo CD ends Synced and Healthy, the SchemaMigration Healthy through lockgate's health check.
    health = resource_status(app, "SchemaMigration", SCHEMA)["health"]
    assert health["status"] == "Healthy", health


@pytest.mark.timeout(600)
def test_a_broken_migration_stops_the_sync_at_its_wave_until_a_fix_is_committed(on_release_1: ShopRepo) -> None:
    shop = on_release_1.shop
    revision = on_release_1.push(broken(on_release_1.release_2), "shop: release 2, with a typo in V2")

    def wave_failed(app: dict[str, Any]) -> bool:
        """The sync of `revision` failed at the Degraded SchemaMigration (Argo CD retries it, and keeps
        the result until the retry starts)."""
        result = ((app.get("status") or {}).get("operationState") or {}).get("syncResult") or {}
        resources = result.get("resources") or []
        failed = result.get("revision") == revision and any(r.get("hookPhase") == "Failed" for r in resources)
        return failed and resource_status(app, "SchemaMigration", SCHEMA).get("health", {}).get("status") == "Degraded"

    app = wait_app(on_release_1.apps, on_release_1.name, "the sync failed", wave_failed, SYNC_TIMEOUT)
    operation = app["status"]["operationState"]
    print(f"broken migration: sync {operation['phase']}: {operation.get('message')}")
    assert "one or more synchronization tasks completed unsuccessfully" in operation["message"], operation
    # The SchemaMigration failed the sync in its wave, Degraded with the runner's cause ...
    result = next(r for r in operation["syncResult"]["resources"] if r["kind"] == "SchemaMigration")
    assert result["hookPhase"] == "Failed" and BROKEN_CAUSE in result["message"], result
    health = resource_status(app, "SchemaMigration", SCHEMA)["health"]
    assert health["status"] == "Degraded" and BROKEN_CAUSE in health["message"], health
    assert condition(shop.migration(), "Stalled").get("status") == "True"
    # ... and nothing of wave 0 was applied: release 1's Deployment and pods serve on.
    assert {r["kind"] for r in operation["syncResult"]["resources"]} == {"ConfigMap", "SchemaMigration"}
    assert requires(shop.deployment().spec.template.metadata) == "1"
    assert {requires(p.metadata) for p in pods(shop)} == {"1"}

    revision = on_release_1.push(on_release_1.release_2, "shop: release 2, V2 fixed")
    on_release_1.wait_synced(revision)
    wait_for("release 2 after the fix", lambda: shop.released("2"))

"""Zero downtime, measured: the shop example's real app behind its Service, under steady traffic,
through release 1 -> 2 (expand, gated rollout, contract). Every failed request is counted.

The negative control runs the same contract before the rollout (straight through the runner, as a
team without the gate would) and must see requests fail: the check can fail, so its 0 means something.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from devcluster.kube import Kube
from devcluster.postgres import in_cluster_url
from devcluster.shop import APP_IMAGE, EXAMPLE, Shop, start_traffic, wait_for

RELEASE_TIMEOUT = 240.0


@pytest.fixture
def shop_on_release_1(
    cluster: Any, kube: Kube, namespace: str, database_url: str, run_operator: Callable[..., Any]
) -> Shop:
    """Release 1 installed, migrated and rolled out, with the operator watching the namespace."""
    run_operator()
    shop = Shop(kube, namespace, cluster.real_image, APP_IMAGE)
    shop.install(in_cluster_url(database_url, cluster.node_ip))
    wait_for("release 1", lambda: shop.released("1"), RELEASE_TIMEOUT)
    return shop


@pytest.mark.timeout(420)
def test_release_1_to_2_serves_every_request(shop_on_release_1: Shop) -> None:
    shop = shop_on_release_1
    traffic = start_traffic(shop)
    shop.move_to("2")
    wait_for("release 2", lambda: shop.released("2"), RELEASE_TIMEOUT)
    report = traffic.stop()
    print(f"release 1 -> 2 under traffic: {report.summary()}")
    assert report.failed == 0, report.summary()
    assert report.served > 100, report.summary()  # traffic ran through the whole release
    pods = shop.kube.core.list_namespaced_pod(shop.namespace, label_selector="app=shop-web").items
    assert {p.metadata.annotations["lockgate.dev/requires-version"] for p in pods} == {"2"}


@pytest.mark.timeout(300)
def test_contract_before_the_rollout_fails_requests(shop_on_release_1: Shop, database_url: str) -> None:
    """The negative control: release 2's phases run at once, contract included, release 1 still serving."""
    shop = shop_on_release_1
    traffic = start_traffic(shop)
    env = {**os.environ, "LOCKGATE_DATABASE_URL": database_url}
    for phase in ("expand", "background", "contract"):
        command = [sys.executable, "-m", "lockgate", "migrate", "--dir", str(EXAMPLE / "migrations")]
        done = subprocess.run([*command, "--phase", phase, "--target", "2"], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    wait_for("release 1 to break", lambda: traffic.report.failed >= 5, timeout=60)
    report = traffic.stop()
    print(f"contract before the rollout: {report.summary()}")
    assert any("created_at" in reason for reason in report.failures), report.summary()
    # Nothing rolled: the failures are release 1's, broken by the early contract (its readiness too).
    pods = shop.kube.core.list_namespaced_pod(shop.namespace, label_selector="app=shop-web").items
    assert {p.metadata.annotations["lockgate.dev/requires-version"] for p in pods} == {"1"}

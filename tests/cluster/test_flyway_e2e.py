"""The Flyway example (examples/flyway) on the real node, in its image (Debian's Java 17, Flyway 11's
jars): `flyway migrate` of the expand location gates the app; the backfill and the index build (the
background location) run while the app's new pods are already Ready, Flyway issue 950's ask, timed;
the contract location runs after the rollout. A failing script stalls with Flyway's own error line and
holds the new pods; the fixed spec goes on."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from devcluster.kube import Kube
from devcluster.postgres import in_cluster_url
from devcluster.workloads import gated_deployment
from tests.gated_support import GatedApp, example_migration, is_true, required, wait_for
from tests.runner_support import query

FLYWAY = Path(__file__).resolve().parents[2] / "examples" / "flyway"
IMAGE = "lockgate-flyway:dev"
OLD_ROWS = 200_000  # 200 batches of the backfill, 0.1 s apart: the background phase runs for tens of seconds
BROKEN_LOCATIONS = "-locations=filesystem:sql/expand,filesystem:sql/broken"
BROKEN_LINE = 'ERROR: Migration of schema "public" to version "3 - broken" failed!'


def release_1(spec: dict[str, Any]) -> dict[str, Any]:
    """Release 1 shipped the expand location's V1 only (here: Flyway's -target) and no other phase."""
    return {
        "version": "1",
        "expand": {"command": [*spec["expand"]["command"][:-1], "-target=1", "migrate"]},
        "background": {"enabled": False},
        "contract": {"enabled": False},
    }


def job(app: GatedApp, phase: str) -> Any:
    jobs = [j for j in app.kube.batch.list_namespaced_job(app.namespace).items if f"-{phase}-" in j.metadata.name]
    return max(jobs, key=lambda j: j.metadata.creation_timestamp) if jobs else None


@pytest.mark.timeout(600)
def test_flyway_locations_are_the_phases_and_the_app_is_ready_while_the_backfill_runs(
    cluster: Any, kube: Kube, namespace: str, database_url: str, run_operator: Callable[..., Any]
) -> None:
    run_operator()
    example = example_migration(FLYWAY / "schemamigration.yaml", IMAGE)
    spec = example["spec"]
    example["spec"] = {**spec, **release_1(spec)}
    orders = GatedApp(
        kube, namespace, "orders-web", "shop-flyway", [example, gated_deployment("orders-web", "shop-flyway", "1")]
    )
    orders.secrets(in_cluster_url(database_url, cluster.node_ip), "shop-db")
    orders.create("SchemaMigration")
    orders.create("Deployment")
    wait_for("release 1", lambda: orders.released("1"))
    query(database_url, f"INSERT INTO orders (customer) SELECT 'Old' || g FROM generate_series(1, {OLD_ROWS}) g")

    # Release 2: expand adds the column and opens the gate; the backfill and index run as background.
    release_2 = {phase: {**spec[phase], "enabled": True} for phase in ("background", "contract")}
    orders.patch_migration({"version": "2", "expand": spec["expand"], **release_2})
    orders.require("2")
    started = time.monotonic()
    wait_for(
        "release 2's pods Ready",
        lambda: orders.rolled_out() and all(required(p) == "2" and is_true(p, "Ready") for p in orders.pods()),
    )
    ready, ready_at = time.monotonic() - started, datetime.now(timezone.utc)
    background = job(orders, "background")
    assert background is not None and not background.status.completion_time, "the background phase ended first"
    wait_for("release 2", lambda: orders.released("2"), timeout=300)
    ended = job(orders, "background").status.completion_time
    print(
        f"flyway release 2: app Ready {ready:.1f}s after the release; the background phase ({OLD_ROWS} rows "
        f"backfilled, index built) ended {(ended - ready_at).total_seconds():.1f}s after that"
    )
    assert ended > ready_at
    assert query(database_url, "SELECT count(*) FROM orders WHERE customer_key IS NULL") == [(0,)]
    assert query(
        database_url, "SELECT convalidated FROM pg_constraint WHERE conname = 'orders_customer_key_present'"
    ) == [(True,)]  # contract ran

    # Release 3's expand has a failing script: Stalled with Flyway's own line, the new pods wait.
    broken = [BROKEN_LOCATIONS if a.startswith("-locations=") else a for a in spec["expand"]["command"]]
    orders.patch_migration({"version": "3", "expand": {"command": broken}})
    orders.require("3")
    orders.assert_stalls_with(BROKEN_LINE, "3")
    orders.patch_migration({"expand": spec["expand"]})  # the fixed image, here: without the broken location
    wait_for("release 3", lambda: orders.released("3"))

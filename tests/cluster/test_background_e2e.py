"""A batched background script on the real node: its progress reaches the SchemaMigration's
status while the Job runs, `lockgate.dev/paused` suspends the Job (the runner stops after its
batch) and removing it resumes after the last committed batch: every row done exactly once.
Over three schemas, status.progress sums the walks of the tenants in flight and counts those done."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from devcluster.kube import Kube
from devcluster.shop import wait_for
from devcluster.workloads import condition
from tests.operator_fixtures import Migrations
from tests.runner_support import query

pytestmark = pytest.mark.timeout(420, func_only=True)
ROWS = 6000
SCRIPTS = {
    "V1__items.sql": f"CREATE TABLE items (id int PRIMARY KEY, touched int NOT NULL DEFAULT 0);\n"
    f"INSERT INTO items (id) SELECT generate_series(1, {ROWS});",
    # 100 rows/s at most: about a minute, long enough to watch, pause and resume.
    "A1__touch.sql": "-- lockgate:batch table=items key=id size=50 max_rows_per_second=100\n"
    "UPDATE items SET touched = touched + 1 WHERE id >= :start AND id < :end;",
}


def running_background_pods(kube: Kube, namespace: str) -> list[Any]:
    """Pods that may still run the runner: terminating ones too (SIGTERM comes after the deletion mark)."""
    pods = kube.core.list_namespaced_pod(namespace, label_selector="lockgate.dev/phase=background").items
    return [p for p in pods if p.status.phase in ("Pending", "Running")]


def test_progress_shows_while_background_runs_and_pause_resumes_after_the_last_batch(
    kube: Kube, namespace: str, migrations: Migrations, run_operator: Any, database_url: str
) -> None:
    run_operator()
    migrations.create("shop", "1", migrations.scripts("shop-r1", SCRIPTS), contract={"enabled": False})
    body = migrations.wait("shop", lambda b: (b.get("status", {}).get("progress") or {}).get("rows", 0) > 0)
    progress = body["status"]["progress"]
    assert progress["script"] == "A1__touch.sql" and body["status"]["phase"] == "Backfilling"
    assert "rows" in progress["summary"] and condition(body, "Ready")["status"] == "True"

    migrations.patch("shop", {"metadata": {"annotations": {"lockgate.dev/paused": "true"}}})
    paused = migrations.wait("shop", lambda b: b.get("status", {}).get("phase") == "Paused", timeout=30)
    assert "lockgate.dev/paused" in condition(paused, "Reconciling")["message"]
    [job] = [j for j in migrations.jobs("shop") if j.metadata.labels["lockgate.dev/phase"] == "background"]
    # The status is written first (it guards the act), so the Job is suspended a moment after Paused shows.
    wait_for(
        "the paused Job to be suspended",
        lambda: kube.batch.read_namespaced_job(job.metadata.name, namespace).spec.suspend is True,
        timeout=10,
    )
    deadline = time.monotonic() + 60
    while running_background_pods(kube, namespace):  # SIGTERM: the runner commits its batch and exits
        assert time.monotonic() < deadline, "the paused Job's pod did not stop"
        time.sleep(1)
    done_while_paused = query(database_url, "SELECT count(*) FROM items WHERE touched > 0")[0][0]
    assert 0 < done_while_paused < ROWS
    time.sleep(3)
    assert query(database_url, "SELECT count(*) FROM items WHERE touched > 0")[0][0] == done_while_paused

    migrations.patch("shop", {"metadata": {"annotations": {"lockgate.dev/paused": None}}})
    finished = migrations.wait("shop", lambda b: b.get("status", {}).get("backgroundVersion") == "1", timeout=240)
    assert "progress" not in finished["status"]
    assert query(database_url, "SELECT touched, count(*) FROM items GROUP BY touched") == [(1, ROWS)]
    background = [e for e in finished["status"]["history"] if e["phase"] == "background"]
    assert [e["result"] for e in background] == ["Succeeded"]  # one Job, paused and resumed


TENANTS = ["tenant_a", "tenant_b", "tenant_c"]
TENANT_ROWS = 2000  # at 100 rows/s, 20 s a tenant: two in flight, then the third


def test_progress_sums_the_walks_of_the_tenants_in_flight(
    namespace: str, migrations: Migrations, run_operator: Any, database_url: str
) -> None:
    for tenant in TENANTS:
        query(database_url, f"CREATE SCHEMA {tenant}")
    run_operator()
    scripts = {**SCRIPTS, "V1__items.sql": SCRIPTS["V1__items.sql"].replace(str(ROWS), str(TENANT_ROWS))}
    targets = {"schemas": TENANTS, "maxParallel": 2}
    migrations.create(
        "tenants", "1", migrations.scripts("tenants-r1", scripts), targets=targets, contract={"enabled": False}
    )
    seen: list[dict[str, Any]] = []

    def record(body: dict[str, Any]) -> bool:
        if progress := body.get("status", {}).get("progress"):
            seen.append(progress)
        return body.get("status", {}).get("backgroundVersion") == "1"

    finished = migrations.wait("tenants", record, timeout=120)
    assert "progress" not in finished["status"]
    assert seen and all(p["targets"]["total"] == len(TENANTS) for p in seen), seen
    assert max(p["targets"]["walking"] for p in seen) >= 1 and all(p["targets"]["walking"] <= 2 for p in seen)
    rows = [p["rows"] for p in seen]
    assert any(0 < a < b for a, b in itertools.pairwise(rows)), rows  # a walk in flight moved on between two reads
    assert max(p["targets"]["done"] for p in seen) >= 1, seen  # the third walks once one of the first two is done
    assert all(f"/{len(TENANTS)} done" in p["summary"] for p in seen)
    for tenant in TENANTS:
        assert query(database_url, f"SELECT touched, count(*) FROM {tenant}.items GROUP BY touched") == [
            (1, TENANT_ROWS)
        ]

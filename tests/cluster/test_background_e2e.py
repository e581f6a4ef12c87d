"""A batched background script on the real node: its progress reaches the SchemaMigration's
status while the Job runs, `lockgate.dev/paused` suspends the Job (the runner stops after its
batch) and removing it resumes after the last committed batch: every row done exactly once."""

from __future__ import annotations

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

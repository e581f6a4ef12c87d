"""A Job stopped by its activeDeadlineSeconds, on the real control plane: the status says the
deadline was exceeded, what it was, and what to change (not "no pod result was found")."""

from __future__ import annotations

from typing import Any

from tests.operator_fixtures import Migrations


def test_a_job_past_its_deadline_stalls_saying_so(migrations: Migrations, run_operator: Any) -> None:
    run_operator()
    scripts = migrations.scripts("scripts", {"V1__noop.sql": "SELECT 1;"})
    # PID 1 has no default SIGTERM handler: exit on it, or the pod takes its 30 s grace to go.
    sleeper = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(143)); time.sleep(120)"
    slow = {"command": ["python", "-c", sleeper]}
    migrations.create("shop", "1", scripts, expand=slow, activeDeadlineSeconds=3, backoffLimit=0)
    stalled = migrations.wait_condition("shop", "Stalled", timeout=90)
    [entry] = stalled["status"]["history"]
    assert entry["result"] == "Failed"
    assert entry["error"].startswith("the Job ran longer than activeDeadlineSeconds (3 s) and was stopped") and entry[
        "error"
    ].endswith("raise spec.activeDeadlineSeconds or make the migration faster"), entry["error"]

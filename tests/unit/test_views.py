"""The views the operator reads Jobs, pods and workloads into (controller/observed.py), and the runner's report."""

from __future__ import annotations

import json

from lockgate.controller.history_entry import Result
from lockgate.controller.observed import job_pod_view, job_state, job_view, workload_view
from lockgate.shared.report import parse_report
from lockgate.shared.versions import Version


def test_runner_report_from_the_termination_message() -> None:
    message = json.dumps(
        {
            "exit_code": 1,
            "applied_count": 2,
            "schema_version": "2",
            "error": {"script": "V3__x.sql", "line": 7, "sqlstate": "23505", "message": "duplicate key"},
        }
    )
    report = parse_report(message, 1)
    assert (report.applied, report.schema_version) == (2, "2")
    assert report.error == "V3__x.sql line 7: [23505] duplicate key"
    other_tool = parse_report(
        "django.db.utils.ProgrammingError: relation does not exist\npostgresql://app:hunter2@db/app", 1
    )
    assert other_tool.error.startswith("django.db.utils.ProgrammingError") and "hunter2" not in other_tool.error
    assert parse_report("", 0).error is None
    traceback = "Traceback (most recent call last):\n" + '  File "x.py", line 1\n' * 200 + "RuntimeError: no prices"
    assert parse_report(traceback, 1).error.endswith("\nRuntimeError: no prices")  # the tail: the error line
    assert len(parse_report(traceback, 1).error) == 1000


def test_job_and_pod_views() -> None:
    assert job_state({"conditions": [{"type": "Complete", "status": "True"}]}) == Result.SUCCEEDED
    assert (
        job_state({"conditions": [{"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True"}]})
        == Result.FAILED
    )
    pod = {
        "metadata": {"name": "p", "labels": {"job-name": "j"}},
        "status": {
            "containerStatuses": [
                {
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "finishedAt": "t",
                            "message": json.dumps({"exit_code": 0, "applied_count": 3}),
                        }
                    }
                }
            ]
        },
    }
    assert job_pod_view(pod).report.applied == 3


def test_workload_rollout_states() -> None:
    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "web", "generation": 2},
        "spec": {"replicas": 2, "template": {"metadata": {"annotations": {"lockgate.dev/requires-version": "3"}}}},
    }
    rolling = workload_view(
        deployment | {"status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2}}
    )
    done = workload_view(
        deployment | {"status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}}
    )
    stale = workload_view(
        deployment | {"status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}}
    )
    assert (rolling.rolled_out, done.rolled_out, stale.rolled_out) == (False, True, False)
    assert done.required == Version.parse("3")


def test_a_failed_jobs_view_carries_why_and_its_deadline() -> None:
    failed = job_view(
        {
            "metadata": {"name": "shop-expand-3-x", "labels": {"lockgate.dev/phase": "expand"}},
            "spec": {"activeDeadlineSeconds": 600, "template": {"spec": {"containers": [{"image": "i"}]}}},
            "status": {
                "failed": 1,
                "conditions": [
                    {"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded"},
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "DeadlineExceeded",
                        "message": "Job was active longer than specified deadline",
                        "lastTransitionTime": "2026-11-21T12:10:00Z",
                    },
                ],
            },
        }
    )
    assert (failed.state, failed.failed_reason, failed.deadline, failed.failed_pods) == (
        Result.FAILED,
        "DeadlineExceeded",
        600,
        1,
    )
    assert failed.finished == "2026-11-21T12:10:00Z"

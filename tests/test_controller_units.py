"""Pure parts of the operator besides decide(): parsing, the Job manifest, wait and status views."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone

import pytest
from kubernetes.client.exceptions import ApiException

from lockgate.cli.status_view import progress_bar, render
from lockgate.cli.wait import verdict
from lockgate.controller.diagnosis import cannot_start, event_subjects
from lockgate.controller.kube import is_transient
from lockgate.controller.ledger import JobRequest
from lockgate.controller.manifests import job_manifest
from lockgate.controller.observed import (
    FAILED,
    SUCCEEDED,
    JobPodView,
    JobView,
    Observed,
    WarningView,
    iso,
    job_pod_view,
    job_state,
    job_view,
    workload_view,
)
from lockgate.controller.reconciler import TRANSIENT_GRACE, next_failure
from lockgate.controller.spec import parse_duration, parse_migration
from lockgate.shared.progress import Progress, last_progress, progress_line
from lockgate.shared.report import parse_report
from lockgate.shared.versions import Version


def body(**spec: object) -> dict:
    return {
        "metadata": {"name": "shop", "namespace": "ns", "uid": "u1", "generation": 3, "resourceVersion": "9"},
        "spec": {
            "version": "3",
            "image": "registry/shop:3",
            "database": {"urlFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
            **spec,
        },
    }


REQUEST = JobRequest("expand", "3", "3", "abc123", "shop-expand-3-x1y2z", "registry/shop:3")


def test_default_job_runs_lockgate_with_the_url_only_from_the_secret() -> None:
    job = job_manifest(parse_migration(body()), REQUEST)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["lockgate"]
    assert container["args"] == ["migrate", "--phase", "expand", "--target", "3"]
    env = {e["name"]: e for e in container["env"]}
    assert env["LOCKGATE_DATABASE_URL"]["valueFrom"] == {"secretKeyRef": {"name": "db", "key": "url"}}
    assert env["LOCKGATE_SUMMARY_FILE"]["value"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    meta = job["metadata"]
    assert meta["finalizers"] == ["lockgate.dev/result"]
    assert meta["ownerReferences"][0] | {} == {
        "apiVersion": "lockgate.dev/v1alpha1",
        "kind": "SchemaMigration",
        "name": "shop",
        "uid": "u1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert meta["labels"]["lockgate.dev/phase"] == "expand" and meta["labels"]["lockgate.dev/version"] == "3"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert job["spec"]["backoffLimit"] == 2 and job["spec"]["ttlSecondsAfterFinished"] == 86400


def test_overrides_reach_the_pod() -> None:
    spec = body(
        migrations={"path": "/app/migrations", "configMap": {"name": "scripts"}},
        expand={"command": ["python", "manage.py", "migrate"]},
        env=[{"name": "DJANGO_SETTINGS_MODULE", "value": "shop.settings"}],
        podTemplate={
            "serviceAccountName": "migrator",
            "nodeSelector": {"pool": "db"},
            "tolerations": [{"key": "db", "operator": "Exists"}],
            "resources": {"limits": {"memory": "256Mi"}},
            "securityContext": {"runAsUser": 1000},
            "imagePullSecrets": [{"name": "reg"}],
        },
        backoffLimit=0,
        activeDeadlineSeconds=600,
        ttlSecondsAfterFinished=0,
        imagePullPolicy="Always",
    )
    job = job_manifest(parse_migration(spec), REQUEST)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["python", "manage.py", "migrate"] and "args" not in container
    assert container["volumeMounts"] == [{"name": "migrations", "mountPath": "/app/migrations", "readOnly": True}]
    assert pod["volumes"] == [{"name": "migrations", "configMap": {"name": "scripts"}}]
    assert {e["name"]: e.get("value") for e in container["env"]}["DJANGO_SETTINGS_MODULE"] == "shop.settings"
    assert (pod["serviceAccountName"], pod["nodeSelector"], pod["automountServiceAccountToken"]) == (
        "migrator",
        {"pool": "db"},
        True,
    )
    assert container["securityContext"] == {"runAsUser": 1000} and container["resources"]["limits"]["memory"] == "256Mi"
    assert (
        job["spec"]["backoffLimit"],
        job["spec"]["activeDeadlineSeconds"],
        job["spec"]["ttlSecondsAfterFinished"],
    ) == (0, 600, 0)
    assert container["imagePullPolicy"] == "Always" and pod["imagePullSecrets"] == [{"name": "reg"}]


def test_undo_job_runs_lockgate_undo() -> None:
    undo = JobRequest("undo", "2", "2", "a", "shop-undo-2-x", "registry/shop:3")
    container = job_manifest(parse_migration(body()), undo)["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["undo", "--to", "2"] and container["image"] == "registry/shop:3"


@pytest.mark.parametrize(("text", "seconds"), [("0s", 0), ("90s", 90), ("10m", 600), ("1h30m", 5400), ("500ms", 0.5)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_bad_duration() -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")


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


def test_job_and_pod_views() -> None:
    assert job_state({"conditions": [{"type": "Complete", "status": "True"}]}) == SUCCEEDED
    assert (
        job_state({"conditions": [{"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True"}]})
        == FAILED
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
    assert done.required == "3"


def test_wait_verdict() -> None:
    smig = {
        "status": {
            "appliedVersion": "2",
            "phase": "Failed",
            "conditions": [{"type": "Stalled", "status": "True", "message": "expand Job failed"}],
        }
    }
    assert verdict(smig, Version.parse("2"))[0]
    waiting, message = verdict(smig, Version.parse("3"))
    assert not waiting and "stalled: expand Job failed" in message
    assert verdict(None, Version.parse("1")) == (False, "the SchemaMigration does not exist (yet)")


def test_status_view_shows_what_matters() -> None:
    smig = body() | {
        "status": {
            "appliedVersion": "2",
            "phase": "Failed",
            "conditions": [
                {"type": "Ready", "status": "False", "message": "expand Job failed"},
                {"type": "Stalled", "status": "True", "message": "fix it"},
            ],
            "gate": {
                "workloads": [
                    {
                        "kind": "Deployment",
                        "name": "web",
                        "requiresVersion": "3",
                        "updated": 1,
                        "desired": 2,
                        "available": 2,
                        "rolledOut": False,
                    }
                ],
                "podsWaiting": 1,
                "podsReady": 2,
            },
            "history": [
                {
                    "phase": "expand",
                    "version": "3",
                    "job": "shop-expand-3-x",
                    "result": "Failed",
                    "applied": 0,
                    "error": "[42P01] nope",
                }
            ],
        }
    }
    text = "\n".join(render(smig))
    for expected in (
        "ns/shop: target 3, applied 2, phase Failed, ready False",
        "Deployment/web requires 3: 1/2 updated",
        "1 waiting, 2 passed",
        "shop-expand-3-x: Failed",
        "error: [42P01] nope",
        "STALLED: fix it",
    ):
        assert expected in text


def test_cluster_commands_fail_clearly_without_credentials_or_arguments(tmp_path) -> None:
    from tests.runner_support import lockgate

    no_credentials = lockgate("status", KUBECONFIG=str(tmp_path / "missing"), HOME=str(tmp_path))
    assert no_credentials.code == 2 and "no Kubernetes credentials: set KUBECONFIG" in no_credentials.err
    no_name = lockgate("wait", "--version", "3", HOME=str(tmp_path))
    assert no_name.code == 2 and "lockgate wait needs --name and --version" in no_name.err
    bad_version = lockgate("wait", "--name", "shop", "--version", "three")
    assert bad_version.code == 2 and "dotted numbers" in bad_version.err


def test_outages_stay_quiet_for_a_minute_and_refusals_show_at_once() -> None:
    outage = ApiException(status=503, reason="Service Unavailable")
    assert is_transient(outage) and is_transient(ConnectionRefusedError()) and is_transient(ApiException(status=0))
    assert not is_transient(ApiException(status=403)) and not is_transient(ApiException(status=422))
    first = next_failure(None, "503", "status", True, now=100.0)
    later = next_failure(first, "503", "status", True, now=130.0)
    assert (later.count, later.since) == (2, 100.0)
    assert not later.shown(100.0 + TRANSIENT_GRACE - 1) and later.shown(100.0 + TRANSIENT_GRACE)
    assert [next_failure(None, "x", "s", True, 0).backoff(), later.backoff()] == [1.0, 2.0]
    refused = next_failure(later, "403", "create", False, now=131.0)
    assert refused.shown(131.0) and (refused.count, refused.since, refused.backoff()) == (1, 131.0, 5.0)


def job_pod(waiting: tuple[str, str] | None = None, running: bool = False, unschedulable: str = "") -> JobPodView:
    state = (
        {"running": {}} if running else {"waiting": {"reason": waiting[0], "message": waiting[1]}} if waiting else {}
    )
    conditions = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable}]
    status = {
        "containerStatuses": [{"state": state}] if state else [],
        "conditions": conditions if unschedulable else [],
    }
    return job_pod_view({"metadata": {"name": "p1", "labels": {"job-name": "j1"}}, "status": status})


STARTED_JOB = JobView("j1", "expand", "1", "a", "img", "active", None, None, True, False, "uid", "u1", False)


@pytest.mark.parametrize(
    ("pods", "warnings", "expected"),
    [
        ([job_pod(("CreateContainerConfigError", 'secret "db" not found'))], (), "CreateContainerConfigError: secret"),
        ([job_pod(("ErrImageNeverPull", "not present"))], (), "spec.imagePullPolicy"),
        ([job_pod(unschedulable="0/1 nodes are available")], (), "Unschedulable: 0/1 nodes"),
        ([], (WarningView("j1", "FailedCreate", "serviceaccount x not found"),), "FailedCreate: serviceaccount"),
        (
            [job_pod(("ContainerCreating", ""))],
            (WarningView("p1", "FailedMount", 'configmap "s" not found'),),
            "FailedMount",
        ),
        # not causes: a pod on its way, a running container, an event about another object, a pod's FailedCreate
        ([job_pod(("ContainerCreating", ""))], (), None),
        ([job_pod(running=True)], (WarningView("p1", "FailedMount", "old"),), None),
        ([], (WarningView("other", "FailedCreate", "x"),), None),
        ([job_pod(("ContainerCreating", ""))], (WarningView("j1", "FailedCreate", "before the pod"),), None),
    ],
)
def test_why_a_started_job_runs_no_container(pods: list, warnings: tuple, expected: str | None) -> None:
    observed = Observed(None, "ns", "m", jobs=(STARTED_JOB,), job_pods=tuple(pods), warnings=warnings)
    cause = cannot_start(STARTED_JOB, observed)
    assert (cause is None) == (expected is None) and (expected is None or expected in cause), cause
    assert event_subjects(observed) == (() if any(p.started for p in pods) else ("j1", *(p.name for p in pods)))
    suspended = dataclasses.replace(STARTED_JOB, suspended=True)
    assert (
        cannot_start(suspended, dataclasses.replace(observed, jobs=(suspended,))) is None
    )  # not started by lockgate yet


def test_status_view_draws_the_background_progress() -> None:
    progress = {"script": "A3__fill.sql", "percent": 45.0, "summary": "45% 4,500 rows, 1m10s left"}
    text = "\n".join(render(body() | {"status": {"phase": "Backfilling", "progress": progress}}))
    assert "background A3__fill.sql: [#########...........] 45% 4,500 rows, 1m10s left" in text
    assert progress_bar(None, 4) == "[....]" and progress_bar(100.0, 4) == "[####]"


def test_progress_lines_survive_the_log_round_trip() -> None:
    view = {"script": "A3__fill.sql", "state": "waiting", "rows": 7, "batches": 1, "percent": None}
    view |= {"rate_rows_per_s": 3.5, "eta_s": None}
    log = f"applying...\n{progress_line(view)}\nlockgate-progress {{torn\n"
    found = last_progress(log)
    assert found == Progress("A3__fill.sql", "waiting", 7, 1, None, 3.5, None)
    assert found.summary() == "7 rows (waiting)" and last_progress("no progress here") is None


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
        FAILED,
        "DeadlineExceeded",
        600,
        1,
    )
    assert failed.finished == "2026-11-21T12:10:00Z"


def test_a_cause_counts_only_once_it_lasts_and_only_from_this_run() -> None:
    now = datetime(2026, 11, 29, 3, 0, 0, tzinfo=timezone.utc)
    young = dataclasses.replace(
        job_pod(("ErrImagePull", "429 Too Many Requests")), created=iso(now - timedelta(seconds=5))
    )
    observed = Observed(None, "ns", "m", jobs=(STARTED_JOB,), job_pods=(young,), now=now)
    assert cannot_start(STARTED_JOB, observed) is None  # a registry hiccup, not a failure yet
    old = dataclasses.replace(young, created=iso(now - timedelta(seconds=25)))
    assert "ErrImagePull" in (cannot_start(STARTED_JOB, dataclasses.replace(observed, job_pods=(old,))) or "")
    resumed = dataclasses.replace(STARTED_JOB, start=iso(now - timedelta(seconds=30)))
    before = WarningView("j1", "FailedCreate", "quota exceeded", iso(now - timedelta(hours=1)))
    since = WarningView("j1", "FailedCreate", "quota exceeded", iso(now - timedelta(seconds=2)))
    stale = Observed(None, "ns", "m", jobs=(resumed,), warnings=(before,), now=now)
    assert cannot_start(resumed, stale) is None  # an Event of an earlier run of the Job
    assert "FailedCreate" in (cannot_start(resumed, dataclasses.replace(stale, warnings=(since,))) or "")

"""Why a started Job runs no container, and when that counts (controller/diagnosis.py): for each
shape of message the kubelet and the Job controller give, a missing object is Stalled with advice
to create it; a question the API server did not answer (an outage) is progress, quiet until it
lasts, and never "create"."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from lockgate.controller.decide import Decision, decide
from lockgate.controller.diagnosis import PASSING_GRACE, Cause, cannot_start, event_subjects, starting
from lockgate.controller.history_entry import Result
from lockgate.controller.ledger import attempt_key
from lockgate.controller.observed import JobPodView, JobView, Observed, WarningView, job_pod_view
from lockgate.shared.timestamps import iso
from lockgate.shared.versions import Version
from tests.release_walk import NOW, applied, job, migration, observe


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


STARTED_JOB = JobView(
    "j1", "expand", Version.parse("1"), "a", "img", Result.RUNNING, None, None, True, False, "uid", "u1", False
)


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
    assert (cause is None) == (expected is None) and (expected is None or expected in cause.message), cause
    # Events are read only when the pods do not say why: they could not change the cause.
    quiet = any(p.started or p.problem for p in pods)
    assert event_subjects(observed) == (() if quiet else ("j1", *(p.name for p in pods)))
    suspended = dataclasses.replace(STARTED_JOB, suspended=True)
    assert (
        cannot_start(suspended, dataclasses.replace(observed, jobs=(suspended,))) is None
    )  # not started by lockgate yet


def test_a_cause_counts_only_once_it_lasts_and_only_from_this_run() -> None:
    now = datetime(2026, 11, 29, 3, 0, 0, tzinfo=timezone.utc)
    young = dataclasses.replace(
        job_pod(("ErrImagePull", "429 Too Many Requests")), created=iso(now - timedelta(seconds=5))
    )
    observed = Observed(None, "ns", "m", jobs=(STARTED_JOB,), job_pods=(young,), now=now)
    assert cannot_start(STARTED_JOB, observed) is None  # a registry hiccup, not a failure yet
    quiet_young = dataclasses.replace(observed, job_pods=(dataclasses.replace(young, problem=None),))
    assert event_subjects(quiet_young) == () and starting(quiet_young)  # no Events read yet, but looked at again
    old = dataclasses.replace(young, created=iso(now - timedelta(seconds=25)))
    assert "ErrImagePull" in str(cannot_start(STARTED_JOB, dataclasses.replace(observed, job_pods=(old,))))
    resumed = dataclasses.replace(STARTED_JOB, start=iso(now - timedelta(seconds=30)))
    before = WarningView("j1", "FailedCreate", "quota exceeded", iso(now - timedelta(hours=1)))
    since = WarningView("j1", "FailedCreate", "quota exceeded", iso(now - timedelta(seconds=2)))
    stale = Observed(None, "ns", "m", jobs=(resumed,), warnings=(before,), now=now)
    assert cannot_start(resumed, stale) is None  # an Event of an earlier run of the Job
    assert "FailedCreate" in str(cannot_start(resumed, dataclasses.replace(stale, warnings=(since,))))


# Message shapes: a missing object, a missing key, an API server that did not answer.

JOB = job("shop-expand-3-x")
CACHE = 'MountVolume.SetUp failed for volume "scripts" : failed to sync configmap cache: timed out waiting for the condition'


def waiting_pod(reason: str = "ContainerCreating", message: str = "", age: float = 30.0) -> JobPodView:
    problem = None if reason == "ContainerCreating" else (reason, message)
    return JobPodView("p1", JOB.name, None, None, problem=problem, created=iso(NOW - timedelta(seconds=age)))


def mount_event(message: str) -> WarningView:
    return WarningView("p1", "FailedMount", message, iso(NOW - timedelta(seconds=5)))


def diagnose(pod: JobPodView, *warnings: WarningView, age: float | None = None) -> Cause | None:
    pod = pod if age is None else dataclasses.replace(pod, created=iso(NOW - timedelta(seconds=age)))
    return cannot_start(JOB, Observed(None, "ns", "shop", jobs=(JOB,), job_pods=(pod,), warnings=warnings, now=NOW))


# (message shape, the pod, its Warning Events, words the message holds, whether it is passing)
SHAPES: list[tuple[str, JobPodView, tuple[WarningView, ...], tuple[str, ...], bool]] = [
    (
        "missing ConfigMap",
        waiting_pod(),
        (mount_event('MountVolume.SetUp failed for volume "scripts" : configmap "no-scripts" not found'),),
        ("cannot start: FailedMount", 'create the ConfigMap "no-scripts"', "spec.migrations.configMap"),
        False,
    ),
    (
        "missing Secret",
        waiting_pod("CreateContainerConfigError", 'secret "nowhere" not found'),
        (),
        ("cannot start: CreateContainerConfigError", 'create the Secret "nowhere"', "spec.database.urlFrom"),
        False,
    ),
    (
        "missing key",
        waiting_pod("CreateContainerConfigError", "couldn't find key url in Secret ns/keyless"),
        (),
        ("add the key url to the Secret ns/keyless", "spec.database.urlFrom"),
        False,
    ),
    (
        "ConfigMap cache not synced",
        waiting_pod(),
        (mount_event(CACHE),),
        ("waits for the API server: FailedMount", "failed to sync configmap cache", "retries on its own"),
        True,
    ),
    (
        "Secret cache not synced",
        waiting_pod("CreateContainerConfigError", "failed to sync secret cache: timed out waiting for the condition"),
        (),
        ("waits for the API server: CreateContainerConfigError", "retries on its own"),
        True,
    ),
    (
        "object not registered with the kubelet yet",
        waiting_pod("CreateContainerConfigError", 'object "ns"/"app-db" not registered'),
        (),
        ("waits for the API server",),
        True,
    ),
    (
        "pod create timed out at etcd",
        JobPodView("none", "other-job", None, None),
        (WarningView(JOB.name, "FailedCreate", "Error creating: etcdserver: request timed out", iso(NOW)),),
        ("waits for the API server: FailedCreate",),
        True,
    ),
    (
        "missing ServiceAccount",
        JobPodView("none", "other-job", None, None),
        (
            WarningView(
                JOB.name,
                "FailedCreate",
                'Error creating: pods "x" is forbidden: error looking up service account ns/robot: serviceaccount "robot" not found',
                iso(NOW),
            ),
        ),
        ("cannot start: FailedCreate", "serviceAccountName"),
        False,
    ),
    (
        "image pull error with a network timeout (unchanged)",
        waiting_pod("ErrImagePull", "dial tcp 10.0.0.1:443: i/o timeout"),
        (),
        ("cannot start: ErrImagePull", "check spec.image and spec.podTemplate.imagePullSecrets"),
        False,
    ),
    (
        "image never pulled (unchanged)",
        waiting_pod("ErrImageNeverPull", 'Container image "x:1" is not present with pull policy of Never'),
        (),
        ("cannot start: ErrImageNeverPull", "put the image on the nodes, or change spec.imagePullPolicy"),
        False,
    ),
]


@pytest.mark.parametrize(("shape", "pod", "warnings", "words", "passing"), SHAPES, ids=[s[0] for s in SHAPES])
def test_each_message_shape_gets_its_own_verdict_and_advice(
    shape: str, pod: JobPodView, warnings: tuple[WarningView, ...], words: tuple[str, ...], passing: bool
) -> None:
    cause = diagnose(pod, *warnings)
    assert cause is not None and cause.passing == passing, cause
    for word in words:
        assert word in cause.message, cause.message
    if passing or "key" in shape:
        assert "create" not in cause.message.replace("Error creating", ""), cause.message  # it exists


def test_an_outage_that_lasts_stalls_but_never_advises_creating_what_exists() -> None:
    for young in (30.0, PASSING_GRACE.total_seconds() - 1):
        assert (cause := diagnose(waiting_pod(), mount_event(CACHE), age=young)) and cause.passing
    lasting = diagnose(waiting_pod(), mount_event(CACHE), age=PASSING_GRACE.total_seconds() + 1)
    assert lasting is not None and not lasting.passing
    assert "has not answered for 5 minutes" in lasting.message and "create" not in lasting.message
    assert diagnose(waiting_pod(), mount_event(CACHE), age=10) is None  # the first STUCK_AFTER: nothing yet


def conditions(decision: Decision) -> dict[str, dict[str, Any]]:
    assert decision.status is not None
    return {c["type"]: c for c in decision.status["conditions"]}


def test_while_the_api_server_is_away_expand_is_reconciling_not_stalled() -> None:
    first = decide(observe(migration()))
    assert first.create is not None
    m = applied(migration(), first)
    running = job(first.create.name, attempt=first.create.attempt)
    pod = dataclasses.replace(waiting_pod(), job=running.name)
    seen = conditions(decide(observe(m, jobs=[running], job_pods=[pod], warnings=[mount_event(CACHE)])))
    assert seen["Stalled"]["status"] == "False" and seen["Ready"]["reason"] == "Expanding"
    assert seen["Reconciling"]["status"] == "True" and "waits for the API server" in seen["Reconciling"]["message"]
    missing = mount_event('MountVolume.SetUp failed for volume "scripts" : configmap "s" not found')
    stalled = conditions(decide(observe(m, jobs=[running], job_pods=[pod], warnings=[missing])))
    assert (stalled["Stalled"]["status"], stalled["Stalled"]["reason"]) == ("True", "JobCannotStart")


def test_a_passing_cause_in_the_background_phase_never_flaps_ready() -> None:
    m = migration()
    name = "shop-background-3-x"
    entry = {"version": "3", "phase": "background", "job": name, "attempt": attempt_key(m), "result": "Running"}
    m = dataclasses.replace(
        m, status={"appliedVersion": "3", "history": [entry | {"image": "registry/shop-migrations:3"}]}
    )
    running = job(name, phase="background", attempt=attempt_key(m))
    pod = dataclasses.replace(waiting_pod(), job=name)
    seen = conditions(decide(observe(m, jobs=[running], job_pods=[pod], warnings=[mount_event(CACHE)])))
    assert (seen["Ready"]["status"], seen["Stalled"]["status"]) == ("True", "False")
    assert "waits for the API server" in seen["Reconciling"]["message"]

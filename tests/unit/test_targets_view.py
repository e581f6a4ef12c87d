"""`lockgate status NAME --targets`: each tenant's state per phase, from the Jobs' index sets and pods."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone

from lockgate.cli.targets_view import PhaseJob, Ran, document, latest_jobs, table, target_rows
from lockgate.controller.history_entry import Result
from lockgate.controller.observed import JobPodView
from lockgate.shared.report import parse_report
from tests.release_walk import job

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=timezone.utc)
TENANTS = ("tenant_a", "tenant_b", "tenant_c", "tenant_d")
CAUSE = 'V3__items.sql line 1: [42P07] relation "items" already exists'


def pod(job_name: str, index: int, created: str, finished: str | None, exit_code: int = 0) -> JobPodView:
    said = {"script": "V3__items.sql", "line": 1, "sqlstate": "42P07", "message": 'relation "items" already exists'}
    message = json.dumps(
        {"exit_code": exit_code, "applied_count": 1, "duration_ms": 5, "error": said if exit_code else None}
    )
    report = parse_report(message, exit_code) if finished else None
    return JobPodView(f"{job_name}-{index}-{created[-3:-1]}", job_name, finished, report, created=created, index=index)


def expand(state: Result, done: str, failed: str) -> PhaseJob:
    view = dataclasses.replace(
        job("notes-expand", state=state), targets=TENANTS, completed_indexes=done, failed_indexes=failed
    )
    pods = (
        pod("notes-expand", 0, "2026-11-21T11:59:00Z", "2026-11-21T11:59:04Z"),
        pod("notes-expand", 1, "2026-11-21T11:59:00Z", "2026-11-21T11:59:02Z", exit_code=1),  # retried:
        pod("notes-expand", 1, "2026-11-21T11:59:10Z", "2026-11-21T11:59:13Z", exit_code=1),  # the last counts
        pod("notes-expand", 2, "2026-11-21T11:59:40Z", None),  # still running; index 3 never started
    )
    started = tuple((p.name, p.created or "") for p in pods[:1] + pods[2:])  # the first try of 1: no start known
    return PhaseJob("expand", "notes-expand", view, pods, started)


def test_each_target_reads_succeeded_failed_running_or_pending_with_its_duration_and_cause() -> None:
    rows = target_rows([expand(Result.RUNNING, "0", "1")], NOW)
    assert list(rows) == list(TENANTS)  # in index order
    assert rows["tenant_a"]["expand"] == Ran("succeeded", "notes-expand", 4)
    assert rows["tenant_b"]["expand"] == Ran("failed", "notes-expand", 3, CAUSE)
    assert rows["tenant_c"]["expand"] == Ran("running", "notes-expand", 20)  # to now
    assert rows["tenant_d"]["expand"] == Ran("pending", "notes-expand")


def test_a_finished_job_leaves_no_target_running() -> None:
    rows = target_rows([expand(Result.FAILED, "0", "1")], NOW)
    assert rows["tenant_c"]["expand"].state == "pending"  # the failure budget stopped it: never finished


def test_the_table_has_a_column_per_phase_and_a_line_per_failure() -> None:
    background = PhaseJob("background", "notes-background", dataclasses.replace(
        job("notes-background", phase="background"), targets=TENANTS[:2], completed_indexes="0-1"
    ))  # fmt: skip
    lines = table([expand(Result.RUNNING, "0", "1"), background], NOW)
    assert lines[0].split() == ["TARGET", "EXPAND", "BACKGROUND"]
    assert lines[1].split() == ["tenant_a", "succeeded", "4s", "succeeded"]  # no pod left: no duration
    assert lines[4].split() == ["tenant_d", "pending", "-"]  # not in the background Job's list
    assert lines[5] == f"tenant_b (expand): {CAUSE}"


def test_a_job_gone_since_is_said_and_json_holds_the_same() -> None:
    gone = PhaseJob("contract", "notes-contract", None)
    lines = table([expand(Result.SUCCEEDED, "0-3", ""), gone], NOW)
    assert "contract: Job notes-contract is gone (its TTL): status.targets keeps its counts" in lines
    doc = document([expand(Result.RUNNING, "0", "1"), gone], NOW)
    assert doc["jobs"] == [
        {"phase": "expand", "wave": "", "job": "notes-expand", "gone": False},
        {"phase": "contract", "wave": "", "job": "notes-contract", "gone": True},
    ]
    assert doc["targets"][1] == {
        "target": "tenant_b",
        "phases": {"expand": {"state": "failed", "job": "notes-expand", "seconds": 3, "error": CAUSE}},
    }


def test_with_a_canary_each_waves_job_gives_its_own_targets_in_one_column() -> None:
    def wave(name: str, wave: str, targets: tuple[str, ...], done: str) -> PhaseJob:
        view = dataclasses.replace(job(name, state=Result.SUCCEEDED), targets=targets, completed_indexes=done)
        return PhaseJob("expand", name, view, wave=wave)

    canary, rest = wave("e-canary", "canary", TENANTS[:1], "0"), wave("e-rest", "rest", TENANTS[1:], "0-1")
    lines = table([canary, rest], NOW)
    assert lines[0].split() == ["TARGET", "EXPAND"] and [line.split()[:2] for line in lines[1:]] == [
        ["tenant_a", "succeeded"],
        ["tenant_b", "succeeded"],
        ["tenant_c", "succeeded"],
        ["tenant_d", "pending"],
    ]
    history = [
        {"version": "2", "phase": "expand", "job": "old"},
        {"version": "3", "phase": "expand", "wave": "canary", "job": "e-canary-1"},
        {"version": "3", "phase": "expand", "wave": "canary", "job": "e-canary-2"},  # the retry: the latest
        {"version": "3", "phase": "expand", "wave": "rest", "job": "e-rest"},
    ]
    assert latest_jobs(history, "3") == {("expand", "canary"): "e-canary-2", ("expand", "rest"): "e-rest"}


def test_several_targets_per_pod_show_their_own_durations_or_the_pods_marked_as_such() -> None:
    said = {"exit_code": 0, "failed_targets": [], "failed_count": 0, "reported": 2, "durations": [40, 2500]}
    chunk = JobPodView(
        "chunk-0", "chunk", "2026-11-21T11:59:09Z", parse_report(json.dumps(said), 0), index=0, created="x"
    )
    running = JobPodView("chunk-1", "chunk", None, None, index=1, created="x")
    view = dataclasses.replace(job("chunk"), targets=TENANTS, per_pod=2, completed_indexes="0", active=1)
    started = (("chunk-0", "2026-11-21T11:59:00Z"), ("chunk-1", "2026-11-21T11:59:30Z"))
    lines = table([PhaseJob("expand", "chunk", view, (chunk, running), started)], NOW)
    assert [line.split() for line in lines[1:5]] == [
        ["tenant_a", "succeeded", "40ms"],
        ["tenant_b", "succeeded", "2s"],
        ["tenant_c", "running", "30s", "(pod)"],  # no report yet: its pod's time, over its chunk
        ["tenant_d", "running", "30s", "(pod)"],
    ]
    assert lines[5].startswith("(pod): its pod's duration, over all the targets it migrated")
    doc = document([PhaseJob("expand", "chunk", view, (chunk, running), started)], NOW)
    assert doc["targets"][0]["phases"]["expand"]["seconds"] == 0.04
    assert doc["targets"][2]["phases"]["expand"]["seconds_of"] == "pod"

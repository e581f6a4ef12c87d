"""Several targets per pod (spec.targets.perPod): the index -> targets mapping both sides use, the
Job it gives, how the operator counts and names a chunk's failed targets, and the runner's loop
over its chunk (the real CLI in-process, on SQLite files as the tenants' databases)."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from lockgate.cli import main
from lockgate.cli.commands import _run_chunk
from lockgate.cli.output import Output, write_report
from lockgate.cli.targets_view import PhaseJob, target_rows
from lockgate.controller.background import progress_status
from lockgate.controller.decide import decide
from lockgate.controller.history_entry import Result
from lockgate.controller.observed import JobPodView, job_view
from lockgate.controller.spec import parse_spec
from lockgate.controller.targets import tally
from lockgate.runner.summary import Summary, chunk_summary
from lockgate.runner.targets import pick
from lockgate.shared.errors import MigrationFailed, Paused, UsageError
from lockgate.shared.progress import Progress
from lockgate.shared.report import parse_report
from lockgate.shared.targets import per_index
from tests.release_walk import applied, job, observe
from tests.unit.test_targets import DATABASE, fan_out, manifest, spec

NAMES = ("t0", "t1", "t2", "t3", "t4")


@pytest.mark.parametrize("per_pod", [1, 2, 3, 5, 7])
def test_the_indexes_cover_every_target_once_in_order(per_pod: int) -> None:
    chunks = per_index(NAMES, per_pod)
    assert [name for names in chunks for name in names] == list(NAMES)
    assert len(chunks) == -(-len(NAMES) // per_pod) and all(0 < len(names) <= per_pod for names in chunks)


def test_a_pod_picks_its_chunk_and_a_wrong_index_or_size_is_refused() -> None:
    picked = pick("schema", ",".join(NAMES), "1", "2")
    assert [(t.name, t.index, t.total) for t in picked] == [("t2", 2, 5), ("t3", 3, 5)]
    assert [t.name for t in pick("schema", ",".join(NAMES), "2", "2")] == ["t4"]
    assert [t.name for t in pick("schema", ",".join(NAMES), "4", None)] == ["t4"]  # one per pod by default
    with pytest.raises(UsageError, match="is not an index of the 5 targets, 2 per index"):
        pick("schema", ",".join(NAMES), "3", "2")
    with pytest.raises(UsageError, match="LOCKGATE_TARGETS_PER_POD '0'"):
        pick("schema", ",".join(NAMES), "0", "0")


def test_per_pod_makes_fewer_indexes_and_tells_the_pods() -> None:
    body = manifest(fan_out(schemas=list(NAMES), perPod=2, maxParallel=8, maxFailed=4))
    job_spec = body["spec"]
    assert (job_spec["completions"], job_spec["parallelism"], job_spec["maxFailedIndexes"]) == (3, 3, 3)
    env = {e["name"]: e.get("value") for e in job_spec["template"]["spec"]["containers"][0]["env"]}
    assert env["LOCKGATE_TARGETS_PER_POD"] == "2" and env["LOCKGATE_TARGETS"] == ",".join(NAMES)
    body["metadata"]["uid"] = "j1"
    assert job_view(body).per_pod == 2
    one = manifest(fan_out(schemas=list(NAMES)))["spec"]
    assert one["completions"] == 5
    assert "LOCKGATE_TARGETS_PER_POD" not in {e["name"] for e in one["template"]["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"perPod": 0}, "spec.targets.perPod: give 1 or more"),
        ({"perPod": 2, "command": ["flyway"]}, "spec.expand.command: another tool migrates one target per pod"),
    ],
)
def test_per_pod_problems_are_refused(fields: dict[str, Any], problem: str) -> None:
    command = {"expand": {"command": fields.pop("command")}} if "command" in fields else {}
    parsed = parse_spec(spec(targets={"schemas": list(NAMES), **fields}, database=DATABASE, **command))
    assert any(problem in p for p in parsed.problems), parsed.problems


def chunk_pod(index: int, exit_code: int, failed: list[list[str]] | None) -> JobPodView:
    said: dict[str, Any] = {"exit_code": exit_code, "applied_count": 1, "message": "some failed"}
    if failed is not None:
        said |= {"failed_targets": failed, "failed_count": len(failed)}
    return JobPodView(f"j-{index}", "j", "2026-12-06T10:00:00Z", parse_report(json.dumps(said), exit_code), index=index)


def test_a_failed_chunk_counts_and_names_the_targets_its_report_names() -> None:
    view = dataclasses.replace(
        job("j", state=Result.FAILED), targets=NAMES, per_pod=2, completed_indexes="1", failed_indexes="0,2"
    )
    pods = (chunk_pod(0, 1, [["t1", "boom"]]), chunk_pod(2, 1, None))  # index 2: a report of one target
    counts = tally(view, pods)
    assert (counts.succeeded, counts.failed, counts.pending) == (3, 2, 0)
    assert counts.failures == (("t1", "boom"), ("t4", "some failed"))
    lost = tally(dataclasses.replace(view, failed_indexes="0,2"), ())  # no pod left: its whole chunk
    assert [t for t, _ in lost.failures] == ["t0, t1", "t4"] and lost.failed == 3  # one line per index


def test_a_spent_failure_budget_counts_indexes_and_says_how_many_targets_that_is() -> None:
    m = fan_out(schemas=list(NAMES), perPod=2, maxFailed=1)
    first = decide(observe(m))
    stopped = dataclasses.replace(
        job(first.create.name, state=Result.FAILED, attempt=first.create.attempt),
        targets=NAMES,
        per_pod=2,
        failed_indexes="0-1",
        failed_reason="MaxFailedIndexesExceeded",
        max_failed=1,
    )
    pods = [dataclasses.replace(chunk_pod(i, 1, [[f"t{2 * i}", "boom"]]), job=stopped.name) for i in (0, 1)]
    [entry] = decide(observe(applied(m, first), jobs=[stopped], job_pods=pods)).status["history"]
    assert entry["error"].endswith(
        "more indexes failed than spec.targets.maxFailed (1) allows (it counts indexes, each a pod of 2 targets "
        "with spec.targets.perPod 2: up to 2 targets), so the Job stopped the others"
    )


def failed_summary(message: str, exc: type[MigrationFailed] | type[Paused] = MigrationFailed) -> Summary:
    summary = Summary("migrate", "expand")
    summary.fail(exc(message))
    return summary


def test_a_chunks_report_names_each_failed_target_and_fits_a_termination_message() -> None:
    ok = Summary("migrate", "expand", applied=[{"version": "1", "script": "V1__a.sql", "ms": 3}], schema_version="1")
    combined = chunk_summary([("t0", ok), ("t1", failed_summary("boom")), ("t2", ok)], 3)
    assert combined.exit_code == 1 and combined.message == "1 of 3 targets of this pod failed: t1: boom"
    assert (len(combined.applied), combined.schema_version) == (2, None)
    assert chunk_summary([("t0", ok), ("t1", failed_summary("stop", Paused))], 3).exit_code == Paused.exit_code
    many = chunk_summary([(f"tenant_{i:03}_" + "x" * 50, failed_summary("y" * 500)) for i in range(100)], 100)
    text = many.compact()
    doc = json.loads(text)
    assert len(text.encode()) < 4096 and doc["failed_count"] == 100 and 5 < len(doc["failed_targets"]) < 100
    assert parse_report(text, 1).failed_targets[0] == ("tenant_000_" + "x" * 50, "y" * 199 + "…")


def test_the_runner_migrates_each_target_of_its_chunk_past_a_failing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scripts, secrets = tmp_path / "m", tmp_path / "secrets"
    scripts.mkdir()
    secrets.mkdir()
    (scripts / "V1__items.sql").write_text("CREATE TABLE items (id int);")
    tenants = ["a-db", "b-db", "c-db", "d-db"]
    for tenant in ("a-db", "c-db", "d-db"):  # b-db's Secret is missing
        (secrets / tenant).write_text(f"sqlite:///{tmp_path / tenant}.sqlite")
    report = tmp_path / "report"
    env = {"LOCKGATE_TARGET_KIND": "database", "LOCKGATE_TARGETS": ",".join(tenants), "JOB_COMPLETION_INDEX": "0"}
    env |= {"LOCKGATE_TARGETS_PER_POD": "3", "LOCKGATE_TARGET_SECRETS_DIR": str(secrets)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(["migrate", "--dir", str(scripts), "--summary-file", str(report)])
    assert code == 2  # the first failure's: a missing Secret is a usage error
    assert [t for t in tenants if (tmp_path / f"{t}.sqlite").exists()] == ["a-db", "c-db"]  # d-db is index 1's
    said = json.loads(report.read_text())
    assert said["failed_count"] == 1 and [t for t, _ in said["failed_targets"]] == ["b-db"]
    assert "the Secret b-db or its URL key does not exist" in said["failed_targets"][0][1]
    out = capsys.readouterr()
    assert "target 3 of 4: database c-db:" in out.out and "1 of 3 targets of this pod failed: b-db" in out.err


def test_status_targets_reads_which_target_of_a_failed_chunk_failed() -> None:
    view = dataclasses.replace(
        job("j", state=Result.FAILED), targets=NAMES, per_pod=2, completed_indexes="1", failed_indexes="0,2"
    )
    pods = (chunk_pod(0, 1, [["t1", "boom"]]), chunk_pod(2, 1, None))
    rows = target_rows([PhaseJob("expand", "j", view, pods, ())], datetime(2026, 12, 6, 10, tzinfo=timezone.utc))
    states = {name: (phases["expand"].state, phases["expand"].error) for name, phases in rows.items()}
    assert states == {
        "t0": ("succeeded", None),  # its pod's report names only t1
        "t1": ("failed", "boom"),
        "t2": ("succeeded", None),
        "t3": ("succeeded", None),
        "t4": ("failed", "some failed"),  # a pod of one target: its own error
    }


def test_background_progress_counts_the_targets_of_the_completed_indexes() -> None:
    walking = dataclasses.replace(chunk_pod(2, 0, None), finished=None, report=None, started=True)
    bg = dataclasses.replace(job("j", phase="background"), targets=NAMES, per_pod=2, completed_indexes="0-1", active=1)
    lines = {walking.name: Progress("A3__fill.sql", "running", 1000, 10, 40.0, 100.0, 30)}
    observed = dataclasses.replace(
        observe(fan_out(schemas=list(NAMES))), jobs=(bg,), job_pods=(walking,), progress=lines
    )
    progress = progress_status(observed)
    assert progress is not None and progress["targets"] == {"walking": 1, "done": 4, "total": 5}


def test_the_runner_rewrites_its_report_after_each_target_so_a_killed_pod_keeps_its_finished_ones(
    tmp_path: Path,
) -> None:
    report, seen = tmp_path / "termination-log", []
    report.write_text("x" * 5000)  # longer than any report: each rewrite must cut what was there
    chunk = pick("schema", "t0,t1,t2", "0", "3")

    def run(target: Any) -> Summary:
        seen.append(json.loads(report.read_text()) if report.read_text().startswith("{") else None)
        return failed_summary("boom") if target.name == "t1" else Summary("migrate", "expand", duration_ms=1500)

    final = _run_chunk(Output(json_mode=True), run, chunk, str(report))
    assert seen[0] is None and [(s["reported"], s["failed_count"]) for s in seen[1:]] == [(1, 0), (2, 1)]
    assert seen[2]["durations"] == [1500, 0] and json.loads(report.read_text())["reported"] == 2  # the last: finish
    assert final.durations == [1500, 0, 1500]
    write_report(str(report), final.compact())
    assert json.loads(report.read_text())["reported"] == 3 and report.read_text() == final.compact()


def test_a_pod_killed_mid_chunk_counts_its_finished_targets_and_names_the_others() -> None:
    killed = {"exit_code": 0, "applied_count": 2, "failed_targets": [], "failed_count": 0, "reported": 2}
    pod = JobPodView("j-0-x", "j", "2026-12-06T10:00:00Z", parse_report(json.dumps(killed), 137), index=0)
    view = dataclasses.replace(job("j", state=Result.FAILED), targets=NAMES, per_pod=5, failed_indexes="0")
    counts = tally(view, (pod,))
    died = "its pod died before reporting this target: kubectl logs j-0-x"
    assert (counts.succeeded, counts.failed) == (2, 3)
    assert counts.failures == (("t2", died), ("t3", died), ("t4", died))
    rows = target_rows([PhaseJob("expand", "j", view, (pod,), ())], datetime(2026, 12, 6, 10, tzinfo=timezone.utc))
    assert [(n, r["expand"].state, r["expand"].error) for n, r in rows.items()][1:3] == [
        ("t1", "succeeded", None),
        ("t2", "failed", died),
    ]


def test_fifty_targets_per_pod_fit_a_termination_message_the_failures_counted() -> None:
    ok = Summary("migrate", "expand", applied=[{"version": "1", "script": "V1__a.sql", "ms": 3}], duration_ms=40)
    names = [f"tenant-{i:03}-" + "x" * 40 for i in range(50)]
    small = json.loads(chunk_summary([(n, ok) for n in names], 50).compact())
    assert (small["reported"], small["durations"]) == (50, [40] * 50)
    failing = chunk_summary([(n, failed_summary("y" * 300)) for n in names], 50)
    text = failing.compact()
    doc = json.loads(text)
    assert len(text.encode()) < 4096 and "durations" not in doc and (doc["reported"], doc["failed_count"]) == (50, 50)
    assert 3 < len(doc["failed_targets"]) < 50 and parse_report(text, 1).durations == ()


def test_a_long_applied_list_is_cut_before_the_targets_durations() -> None:
    scripts = [{"version": f"2026.12.06.{v:04}", "script": f"V2026.12.06.{v:04}__a.sql", "ms": 3} for v in range(10)]
    ok = Summary("migrate", "expand", applied=scripts, duration_ms=40)
    text = chunk_summary([(f"tenant-{i:03}", ok) for i in range(50)], 50).compact()
    doc = json.loads(text)
    assert len(text.encode()) < 4096 and doc["durations"] == [40] * 50 and doc["applied_count"] == 500
    assert 0 < len(doc["applied"]) < 500

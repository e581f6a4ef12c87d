"""spec.targets.schemaQuery: the parser's refusals, the hash sharding both sides rely on, the Job it
gives, the runner's pick of its own schemas, and the operator's counts from what the pods report."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import pytest
import yaml

from lockgate.cli.targets_view import PhaseJob, target_rows
from lockgate.controller.background import progress_status
from lockgate.controller.decide import decide
from lockgate.controller.history_entry import Result
from lockgate.controller.observed import JobPodView, job_view
from lockgate.controller.spec import parse_spec
from lockgate.controller.targets import tally
from lockgate.runner.summary import Summary, chunk_summary
from lockgate.runner.targets import pick_listed
from lockgate.shared.errors import MigrationFailed, UsageError
from lockgate.shared.progress import Progress
from lockgate.shared.report import parse_report
from lockgate.shared.targets import shard
from tests.release_walk import applied, conditions, job, observe
from tests.unit.test_spec import with_defaults
from tests.unit.test_targets import CRD, DATABASE, ONLY_EXPAND, fan_out, manifest, spec

SQL = "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\\_%'"


def query(**fields: Any) -> dict[str, Any]:
    return {"schemaQuery": {"sql": SQL, **fields}}


@pytest.mark.parametrize(
    ("targets", "problem"),
    [
        (query() | {"schemas": ["a"]}, "spec.targets: set schemas (a schema per tenant), schemaQuery"),
        (query() | {"perPod": 5}, "spec.targets.perPod: no meaning with schemaQuery"),
        ({"schemaQuery": {"sql": " "}}, "spec.targets.schemaQuery.sql: give the SELECT whose first column"),
        ({"schemaQuery": {"sql": "x" * 4001}}, "keep the query under 4000"),
        (query(indexes=0), "spec.targets.schemaQuery.indexes: 0 is not between 1 and 1000"),
        (query(indexes="8"), "spec.targets.schemaQuery.indexes: '8' is not between 1 and 1000"),
    ],
)
def test_a_bad_schema_query_is_refused_naming_the_field_and_the_fix(targets: dict[str, Any], problem: str) -> None:
    parsed = parse_spec(spec(targets=targets, database=DATABASE))
    assert any(problem in p for p in parsed.problems), parsed.problems


def test_a_schema_query_needs_the_database_and_lockgates_own_commands() -> None:
    alone = parse_spec(spec(targets=query()))
    assert "spec.targets.schemaQuery: set spec.database, the database that holds the schemas" in alone.problems
    flyway = parse_spec(spec(targets=query(), database=DATABASE, expand={"command": ["flyway", "migrate"]}))
    assert any(
        p.startswith("spec.expand.command: another tool") and "spec.targets.schemas" in p for p in flyway.problems
    )


def test_a_schema_query_parses_with_exactly_the_crd_defaults_and_its_indexes_default() -> None:
    schema = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    raw = spec(targets=query() | {"maxParallel": 3}, database=DATABASE)
    parsed = parse_spec(copy.deepcopy(raw))
    assert parsed.problems == () and parsed == parse_spec(with_defaults(copy.deepcopy(raw), schema))
    assert parsed.targets is not None and (parsed.targets.query, parsed.targets.indexes) == (SQL, 6)
    assert parsed.targets.names == () and parsed.targets.kind == "schema"


def test_sharding_is_stable_puts_every_name_in_exactly_one_index_and_spreads_them() -> None:
    # CRC-32 of the UTF-8 bytes, as gzip computes it: the same in every process and version
    assert [shard(n, 16) for n in ("tenant_0001", "tenant_0002", "Ä")] == [7, 13, 11]
    names = [f"tenant_{i:05}" for i in range(10_000)]
    spread = Counter(shard(n, 16) for n in names)
    assert set(spread) == set(range(16)) and max(spread.values()) < 1.1 * 625 and min(spread.values()) > 0.9 * 625
    picked = [t.name for i in range(16) for t in pick_listed(names, str(i), "16")]
    assert sorted(picked) == names  # each in exactly one index
    # A schema created meanwhile moves no other one: each index keeps what it had, one gains it.
    before = {i: {t.name for t in pick_listed(names, str(i), "16")} for i in range(16)}
    after = {i: {t.name for t in pick_listed([*names, "tenant_new"], str(i), "16")} for i in range(16)}
    assert [i for i in range(16) if after[i] != before[i]] == [shard("tenant_new", 16)]


def test_a_pod_picks_its_own_schemas_once_each_bad_rows_included_as_targets() -> None:
    rows: list[str | None] = ["tenant_a", "tenant_b", "tenant_a", "bad name", None, "tenant_c"]
    picked = [pick_listed(rows, str(i), "3") for i in range(3)]
    assert sorted(t.name for p in picked for t in p) == ["NULL", "bad name", "tenant_a", "tenant_b", "tenant_c"]
    for index, mine in enumerate(picked):
        assert all(shard(t.name, 3) == index for t in mine)
        assert [(t.kind, t.index, t.total) for t in mine] == [("schema", n, len(mine)) for n in range(len(mine))]
    with pytest.raises(UsageError, match="JOB_COMPLETION_INDEX '3' is not one of the 3 indexes"):
        pick_listed(rows, "3", "3")
    with pytest.raises(UsageError, match="LOCKGATE_TARGETS_INDEXES '0'"):
        pick_listed(rows, "0", "0")


def test_a_schema_query_is_an_indexed_job_of_its_indexes_given_the_query_not_names() -> None:
    body = manifest(fan_out(schemaQuery={"sql": SQL, "indexes": 6}, maxParallel=8, maxFailed=2))
    job_spec = body["spec"]
    assert (job_spec["completions"], job_spec["parallelism"], job_spec["maxFailedIndexes"]) == (6, 6, 2)
    env = {e["name"]: e.get("value") for e in job_spec["template"]["spec"]["containers"][0]["env"]}
    assert env["LOCKGATE_TARGETS_QUERY"] == SQL and env["LOCKGATE_TARGETS_INDEXES"] == "6"
    assert env["LOCKGATE_TARGET_KIND"] == "schema" and "LOCKGATE_TARGETS" not in env
    assert env["LOCKGATE_DATABASE_URL"] is None  # from the Secret, never the Job
    body["metadata"]["uid"] = "j1"
    view = job_view(body)
    assert (view.query, view.indexes, view.fan_out, view.targets) == (SQL, 6, True, ())
    narrow = manifest(fan_out(schemaQuery={"sql": SQL, "indexes": 3}, maxParallel=8))["spec"]
    assert (narrow["completions"], narrow["parallelism"]) == (3, 3)


def reporting(job_name: str, index: int, count: int, failed: list[list[str]] | None = None) -> JobPodView:
    """A pod of a schemaQuery Job: how many schemas it covered, and the failed ones."""
    said = {"exit_code": 1 if failed else 0, "applied_count": count, "failed_count": len(failed or [])}
    said |= {"target_count": count, "failed_targets": failed or [], "message": "some failed" if failed else None}
    report = parse_report(json.dumps(said), said["exit_code"])
    return JobPodView(f"{job_name}-{index}", job_name, "2026-11-21T11:59:29Z", report, index=index)


def queried(name: str, state: Result, done: str, failed: str = "", indexes: int = 4, active: int = 0) -> Any:
    view = job(name, state=state)
    fields = {"completed_indexes": done, "failed_indexes": failed, "active": active}
    return dataclasses.replace(view, query=SQL, indexes=indexes, **fields)


def test_the_tally_counts_what_the_pods_reported_and_names_the_failed_schemas() -> None:
    pods = (reporting("j", 0, 7), reporting("j", 1, 8, [["tenant_x", "boom"], ["bad name", "not a plain name"]]))
    running = tally(queried("j", Result.RUNNING, "0", "1"), pods)
    assert (running.total, running.succeeded, running.failed, running.unreported) == (15, 13, 2, 2)
    assert running.failures == (("tenant_x", "boom"), ("bad name", "not a plain name"))
    assert running.counts()["unreportedIndexes"] == 2 and running.pending == 0
    # An index whose query failed (no count, no names): one failed target, named by its index.
    crashed = JobPodView(
        "j-2", "j", "2026-11-21T11:59:30Z", parse_report('{"exit_code": 2, "message": "q"}', 2), index=2
    )
    lost = tally(queried("j", Result.FAILED, "0,3", "1-2"), (*pods, crashed, reporting("j", 3, 5)))
    assert (lost.total, lost.failed, lost.unreported) == (21, 3, 0)
    assert lost.failures[-1] == ("index 2", "q")
    assert lost.error().startswith("3 of 21 targets failed: tenant_x: boom; bad name: not a plain name; index 2: q")
    # A pod killed mid-way: its last report, rewritten after each schema, counts those it never reached.
    said = {"exit_code": 0, "applied_count": 2, "failed_count": 0, "failed_targets": [], "target_count": 5}
    died = parse_report(json.dumps(said | {"reported": 2, "durations": [3, 4]}), 137)
    killed = JobPodView("j-3", "j", "2026-11-21T11:59:31Z", died, index=3)
    cut_short = tally(queried("j", Result.FAILED, "0", "1,3"), (*pods, killed))
    assert (cut_short.total, cut_short.failed, cut_short.succeeded) == (20, 5, 15)
    assert cut_short.failures[-1][0] == "index 3" and cut_short.failures[-1][1].startswith(
        "3 of its 5 schemas not reached"
    )


def test_the_gate_opens_once_every_index_succeeded_and_status_counts_the_reported_schemas() -> None:
    m = fan_out(schemaQuery={"sql": SQL, "indexes": 4}, **{"spec": {"background": {"enabled": False}}})
    first = decide(observe(m))
    name = first.create.name
    some = [reporting(name, i, 10) for i in range(2)]
    running = decide(observe(applied(m, first), jobs=[queried(name, Result.RUNNING, "0-1", active=2)], job_pods=some))
    assert "appliedVersion" not in running.status and conditions(running)["Ready"] == "False"
    targets = running.status["targets"]
    assert targets["total"] == 20 and targets["schemaQuery"] == {"indexes": 4}
    assert targets["summary"] == "20/20 expand, 2 indexes to report"
    pods = some + [reporting(name, 2, 10), reporting(name, 3, 0)]
    done = decide(observe(applied(m, running), jobs=[queried(name, Result.SUCCEEDED, "0-3")], job_pods=pods))
    assert done.status["appliedVersion"] == "3" and conditions(done)["Ready"] == "True"
    assert done.status["targets"]["total"] == 30 and done.status["targets"]["phases"]["expand"]["succeeded"] == 30
    assert done.status["history"][0]["targets"]["total"] == 30


def test_a_finished_job_waits_briefly_for_its_pods_counts() -> None:
    m = fan_out(schemaQuery={"sql": SQL, "indexes": 2})
    first = decide(observe(m))
    name = first.create.name
    just = datetime(2026, 11, 21, 11, 59, 32, tzinfo=timezone.utc)  # 2 s after the Job completed
    seen = [reporting(name, 0, 3)]  # index 1's pod not seen yet
    view = queried(name, Result.SUCCEEDED, "0-1", indexes=2)
    early = decide(observe(applied(m, first), now=just, jobs=[view], job_pods=seen))
    assert early.requeue_after == 1.0 and "appliedVersion" not in (early.status or {})  # pods' reports not seen yet


def test_a_new_query_or_index_count_runs_the_phases_again_while_the_gate_stays_open() -> None:
    """How schemas created since catch up without a new version (docs/tenants.md): the retry
    annotation reruns failed phases only; a changed query runs every applied phase again."""
    m = fan_out(schemaQuery={"sql": SQL, "indexes": 2}, spec=ONLY_EXPAND)
    first = decide(observe(m))
    name = first.create.name
    pods = [reporting(name, i, 3) for i in range(2)]
    done = applied(
        m, decide(observe(applied(m, first), jobs=[queried(name, Result.SUCCEEDED, "0-1", indexes=2)], job_pods=pods))
    )
    assert decide(observe(dataclasses.replace(done, annotations={"lockgate.dev/retry": "1"}))).create is None
    for changed in ({"sql": SQL + " /* new tenants */", "indexes": 2}, {"sql": SQL, "indexes": 3}):
        again = decide(observe(dataclasses.replace(fan_out(schemaQuery=changed, spec=ONLY_EXPAND), status=done.status)))
        assert again.create is not None and again.create.phase == "expand"  # every schema listed now
        assert again.status["appliedVersion"] == "3" and conditions(again)["Ready"] == "True"


def test_status_targets_shows_each_index_and_each_failed_schema() -> None:
    pods = (reporting("j", 0, 7), reporting("j", 1, 8, [["tenant_x", "boom"]]))
    view = queried("j", Result.FAILED, "0", "1", indexes=2)
    rows = target_rows([PhaseJob("expand", "j", view, pods, ())], datetime(2026, 12, 6, 10, tzinfo=timezone.utc))
    states = {n: (p["expand"].state, p["expand"].error) for n, p in rows.items()}
    assert states == {"index 0": ("succeeded", None), "index 1": ("failed", None), "tenant_x": ("failed", "boom")}


def test_a_pods_report_says_how_many_schemas_it_covered_none_included() -> None:
    failed = Summary("migrate", "expand")
    failed.fail(MigrationFailed("boom"))
    report = parse_report(chunk_summary([("tenant_a", Summary("migrate", "expand")), ("t b", failed)], 2).compact(), 1)
    assert (report.target_count, report.failed_count, report.failed_targets) == (2, 1, (("t b", "boom"),))
    none = Summary("migrate", "expand", failed_count=0, target_count=0)
    assert parse_report(none.compact(), 0).target_count == 0
    assert parse_report(Summary("migrate").compact(), 0).target_count is None  # one database: no count


def test_the_query_example_parses_without_problems() -> None:
    example = yaml.safe_load((CRD.parents[1] / "examples" / "tenants" / "schemamigration-query.yaml").read_text())
    parsed = parse_spec(example["spec"])
    assert parsed.problems == () and parsed.targets is not None and parsed.targets.indexes == 8


def test_background_progress_counts_a_querys_indexes_done() -> None:
    walking = dataclasses.replace(reporting("bg", 1, 0), finished=None, report=None, started=True)
    bg = dataclasses.replace(queried("bg", Result.RUNNING, "0,2", active=2), phase="background")
    lines = {walking.name: Progress("A3__fill.sql", "running", 1000, 10, 40.0, 100.0, 30)}
    m = fan_out(schemaQuery={"sql": SQL, "indexes": 4})
    progress = progress_status(dataclasses.replace(observe(m, jobs=[bg], job_pods=[walking]), progress=lines))
    assert progress is not None and progress["targets"] == {"walking": 1, "done": 2, "total": 4, "unit": "indexes"}
    assert progress["summary"].endswith("1,000 rows, 30s left, 1 walking, 2/4 indexes done")

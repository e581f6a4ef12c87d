"""A canary with spec.targets.schemaQuery: its first `count` indexes (shards) as the canary wave's
Job, the others as the rest wave's, whose pods offset their index (LOCKGATE_TARGETS_FIRST_INDEX);
each wave's Job records a listing of its own, and the status counts both waves' reports."""

from __future__ import annotations

import copy
import dataclasses
from datetime import datetime, timezone
from typing import Any

import pytest
import yaml

from lockgate.cli.targets_view import PhaseJob, target_rows
from lockgate.controller.decide import Decision, decide
from lockgate.controller.history_entry import Result
from lockgate.controller.manifests import job_manifest
from lockgate.controller.observed import job_view
from lockgate.controller.spec import Migration, parse_spec
from lockgate.controller.targets import CANARY, REST, WHOLE, digest, tally, wave_targets
from lockgate.runner.targets import pick_listed
from lockgate.shared.errors import UsageError
from lockgate.shared.targets import query_listing, shard
from tests.release_walk import applied, conditions, migration, observe
from tests.unit.test_schema_query import SQL, queried, reporting
from tests.unit.test_spec import with_defaults
from tests.unit.test_targets import CRD, DATABASE, ONLY_EXPAND, spec


def canary_query(count: int = 1, indexes: int = 4, approval: bool = False, **extra: Any) -> dict[str, Any]:
    canary = {"count": count} | ({"requireApproval": True} if approval else {})
    return {"schemaQuery": {"sql": SQL, "indexes": indexes}, "canary": canary, **extra}


def made(m: Migration, d: Decision) -> tuple[str, int, dict[str, Any]]:
    """A claimed Job's wave label, completions and its container's environment."""
    assert d.create is not None
    body = job_manifest(m, d.create)
    env = {e["name"]: e.get("value") for e in body["spec"]["template"]["spec"]["containers"][0]["env"]}
    return body["metadata"]["labels"].get("lockgate.dev/wave", ""), body["spec"]["completions"], env


def finish(m: Migration, claimed: Decision, counts: list[int]) -> Decision:
    """The next decision once the claimed Job completed, its pod of index i reporting counts[i] schemas."""
    assert claimed.create is not None
    body = job_manifest(m, claimed.create)
    assert body["spec"]["completions"] == len(counts)
    body["metadata"]["uid"] = f"uid-{claimed.create.name}"
    body["status"] = {
        "completedIndexes": ",".join(map(str, range(len(counts)))),
        "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-21T11:59:30Z"}],
    }
    pods = [reporting(claimed.create.name, i, n) for i, n in enumerate(counts)]
    return decide(observe(applied(m, claimed), jobs=[job_view(body)], job_pods=pods))


@pytest.mark.parametrize(
    ("targets", "problem"),
    [
        (canary_query(count=0), "spec.targets.canary.count: 0 is not between 1 and 3: the canary wave runs the first"),
        (canary_query(count=4), "spec.targets.canary.count: 4 is not between 1 and 3"),
        (canary_query(count=1, indexes=1), "spec.targets.canary.count: 1 is not between 1 and 0"),
        # indexes default to 2 × maxParallel: 4 here
        ({"schemaQuery": {"sql": SQL}, "maxParallel": 2, "canary": {"count": 4}}, "4 is not between 1 and 3"),
        (
            {"schemaQuery": {"sql": SQL}, "canary": {"selector": {"matchLabels": {"c": "y"}}}},
            "spec.targets.canary.selector: schemas have no labels",
        ),
    ],
)
def test_a_query_canary_of_no_index_of_every_index_or_by_label_is_refused(
    targets: dict[str, Any], problem: str
) -> None:
    parsed = parse_spec(spec(targets=targets, database=DATABASE))
    assert any(problem in p for p in parsed.problems), parsed.problems


def test_a_query_canary_parses_with_exactly_the_crd_defaults() -> None:
    schema = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    raw = spec(targets=canary_query(count=3), database=DATABASE)
    parsed = parse_spec(copy.deepcopy(raw))
    assert parsed.problems == () and parsed == parse_spec(with_defaults(copy.deepcopy(raw), schema))
    assert parsed.targets is not None and (parsed.targets.canary, parsed.targets.indexes) == (3, 4)


def test_the_crd_refuses_a_query_canary_of_every_index_only() -> None:
    """The CEL rules as the API server runs them are tested in tests/cluster/test_crd_validation.py;
    here: the list rule lets a query's count through, the query's own bounds it by its indexes."""
    targets = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    rules = {r["rule"]: r for r in targets["spec"]["properties"]["targets"]["x-kubernetes-validations"]}
    listed = next(r for r in rules if "size(self.schemas)" in r)
    assert "has(self.schemaQuery) ||" in listed
    mine = next(r for r in rules if "self.canary.count < (has(self.schemaQuery.indexes)" in r)
    assert rules[mine]["fieldPath"] == ".canary.count" and "below schemaQuery.indexes" in rules[mine]["message"]
    assert not any('!has(self.schemaQuery) || !has(self.canary)"' in r for r in rules)


def test_the_canary_job_takes_the_first_shards_and_the_rest_job_the_others_from_its_offset() -> None:
    m = migration(targets=canary_query(count=1), **ONLY_EXPAND)
    first = decide(observe(m))
    wave, completions, env = made(m, first)
    assert (wave, completions, env["LOCKGATE_TARGETS_INDEXES"]) == ("canary", 1, "4")
    assert "LOCKGATE_TARGETS_FIRST_INDEX" not in env and env["LOCKGATE_TARGETS_QUERY"] == SQL
    rest = finish(m, first, [5])
    wave, completions, env = made(m, rest)
    assert (wave, completions, env["LOCKGATE_TARGETS_INDEXES"], env["LOCKGATE_TARGETS_FIRST_INDEX"]) == (
        "rest",
        3,
        "4",
        "1",
    )
    assert rest.create is not None
    view = job_view(job_manifest(m, rest.create) | {"metadata": {"uid": "r", "name": rest.create.name}})
    assert (view.first_index, view.index_count, view.indexes) == (1, 3, 4)


def test_the_waves_pods_migrate_every_schema_exactly_once_the_rest_exactly_its_shards() -> None:
    names = [f"tenant_{i:04}" for i in range(2_000)]
    canary = [t.name for i in range(2) for t in pick_listed(names, str(i), "7")]
    rest = [pick_listed(names, str(i), "7", "2") for i in range(5)]
    assert {shard(n, 7) for n in canary} == {0, 1}
    assert [{shard(t.name, 7) for t in mine} for mine in rest] == [{2}, {3}, {4}, {5}, {6}]
    assert sorted(canary + [t.name for mine in rest for t in mine]) == names  # each exactly once


@pytest.mark.parametrize(
    ("index", "first", "problem"),
    [
        ("3", "1", "JOB_COMPLETION_INDEX '3' plus LOCKGATE_TARGETS_FIRST_INDEX 1 is not one of the 4 indexes"),
        ("0", "4", "LOCKGATE_TARGETS_FIRST_INDEX '4' is not one of the 4 indexes"),
        ("0", "-1", "LOCKGATE_TARGETS_FIRST_INDEX '-1' is not one of the 4 indexes"),
    ],
)
def test_a_mismatched_offset_is_refused_naming_both_variables(index: str, first: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem) as said:
        pick_listed(["tenant_a"], index, "4", first)
    assert "completions match (a canary's rest Job" in str(said.value) or "first shard" in str(said.value)


def test_each_wave_covers_a_listing_of_its_own_and_the_whole_one_is_unchanged() -> None:
    parsed = parse_spec(spec(targets=canary_query(count=1), database=DATABASE))
    targets = parsed.targets
    assert targets is not None
    whole, canary, rest = (digest(wave_targets(targets, w).listing()) for w in (WHOLE, CANARY, REST))
    assert len({whole, canary, rest}) == 3  # a finished canary Job covers neither the rest nor every shard
    assert wave_targets(targets, WHOLE).listing() == (f"schemaQuery 4: {SQL}",)  # what earlier releases recorded
    assert query_listing(SQL, 4, 1, 3) == wave_targets(targets, REST).listing() == query_listing(SQL, 4, 1)
    assert dataclasses.replace(targets, canary=2) != targets
    assert digest(wave_targets(dataclasses.replace(targets, canary=2), CANARY).listing()) != canary


def test_the_canary_runs_first_then_after_approval_the_rest_and_status_sums_their_reports() -> None:
    m = migration(targets=canary_query(count=1, approval=True), **ONLY_EXPAND)
    first = decide(observe(m))
    assert made(m, first)[0] == "canary" and "-expand-canary-3-" in first.create.name
    waiting = finish(m, first, [5])
    assert waiting.create is None and waiting.status["phase"] == "AwaitingCanaryApproval"
    assert "appliedVersion" not in waiting.status and conditions(waiting)["Ready"] == "False"
    said = next(c for c in waiting.status["conditions"] if c["type"] == "Reconciling")["message"]
    assert "the schemas of the 1 canary index(es) expanded 3; annotate lockgate.dev/approve-canary=3" in said
    assert "to expand the other 3 indexes' schemas" in said
    assert waiting.status["targets"]["summary"] == "5/5 expand, 3 indexes to report"
    held = applied(m, waiting)
    assert decide(observe(held)).create is None  # no approval, no rest
    approved_m = dataclasses.replace(held, annotations={"lockgate.dev/approve-canary": "3"})
    rest = decide(observe(approved_m))
    assert made(approved_m, rest)[:2] == ("rest", 3) and "-expand-rest-3-" in rest.create.name
    done = finish(approved_m, rest, [4, 0, 6])
    assert done.status["appliedVersion"] == "3" and conditions(done)["Ready"] == "True"
    counts = done.status["targets"]
    assert (counts["total"], counts["phases"]["expand"]["succeeded"], counts["summary"]) == (15, 15, "15/15 expand")
    assert [(e["wave"], e["targets"]["total"]) for e in done.status["history"]] == [("canary", 5), ("rest", 10)]
    assert decide(observe(applied(approved_m, done))).create is None  # both waves cover the spec: nothing runs again


def test_the_rest_jobs_indexes_are_named_by_their_shard_in_status_and_the_targets_view() -> None:
    canary = queried("c", Result.SUCCEEDED, "0", indexes=4)
    canary = dataclasses.replace(canary, completions=1)
    rest = dataclasses.replace(queried("r", Result.FAILED, "0,2", "1", indexes=4), first_index=1)
    pods = (reporting("c", 0, 2), reporting("r", 0, 3), reporting("r", 2, 1))
    crashed = tally(rest, pods)  # index 1 of the rest Job died before it counted: shard 2
    assert (crashed.total, crashed.failed, crashed.unreported) == (5, 1, 0) and crashed.failures[0][0] == "index 2"
    assert tally(canary, pods).total == 2
    now = datetime(2026, 12, 6, 10, tzinfo=timezone.utc)
    rows = target_rows([PhaseJob("expand", "c", canary, pods, ()), PhaseJob("expand", "r", rest, pods, ())], now)
    assert {n: p["expand"].state for n, p in rows.items()} == {
        "index 0": "succeeded",
        "index 1": "succeeded",
        "index 2": "failed",
        "index 3": "succeeded",
    }

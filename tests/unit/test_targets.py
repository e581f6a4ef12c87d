"""Many tenants, one SchemaMigration (controller/targets.py and its use by the spec, the Job manifest,
the views, the ledger and the status): the pure rules, without a cluster."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockgate.controller.background import progress_status
from lockgate.controller.decide import decide
from lockgate.controller.history_entry import Result
from lockgate.controller.manifests import job_manifest
from lockgate.controller.observed import JobPodView, job_pod_view, job_view
from lockgate.controller.spec import parse_spec
from lockgate.controller.targets import Tally, digest, indexes, tally
from lockgate.shared.progress import Progress
from lockgate.shared.report import parse_report
from tests.release_walk import applied, conditions, job, migration, observe
from tests.unit.test_spec import with_defaults

CRD = Path(__file__).resolve().parents[2] / "crds" / "lockgate.dev_schemamigrations.yaml"
DATABASE = {"urlFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}
SCHEMAS = ["tenant_a", "tenant_b", "tenant_c"]
ONLY_EXPAND = {"background": {"enabled": False}, "contract": {"enabled": False}}


def spec(**fields: Any) -> dict[str, Any]:
    return {"version": "3", "image": "registry/app:3", **fields}


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"targets": {"schemas": ["a", "b", "a"]}, "database": DATABASE}, "a listed more than once"),
        ({"targets": {"databases": {"secrets": ["t1", "t1"]}}}, "t1 listed more than once"),
        ({"targets": {"schemas": ["a"], "databases": {"secrets": ["t1"]}}, "database": DATABASE}, "one of them"),
        ({"targets": {}, "database": DATABASE}, "one of them"),
        ({"targets": {"schemas": ["a"]}}, "set spec.database, the database that holds the schemas"),
        ({"targets": {"databases": {"secrets": ["t1"]}}, "database": DATABASE}, "remove it"),
        ({"targets": {"schemas": []}, "database": DATABASE}, "list 1 to 1000 targets"),
        ({"targets": {"schemas": ["a-b", "1x"]}, "database": DATABASE}, "a-b, 1x is not a valid name"),
        ({"targets": {"databases": {"secrets": ["Tenant_One"]}}}, "Tenant_One is not a valid name"),
        (
            {"targets": {"schemas": ["a"]}, "database": {**DATABASE, "historyTable": "app.history"}},
            "give the table's name only",
        ),
        ({}, "spec.database: set it, or spec.targets"),
    ],
)
def test_bad_and_duplicate_targets_are_refused_naming_the_field(fields: dict[str, Any], problem: str) -> None:
    parsed = parse_spec(spec(**fields))
    assert any(problem in p for p in parsed.problems), parsed.problems


def test_targets_parse_with_exactly_the_crd_defaults() -> None:
    schema = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for raw in (
        spec(targets={"schemas": SCHEMAS}, database=DATABASE),
        spec(targets={"databases": {"secrets": ["t1"]}}),
    ):
        parsed = parse_spec(copy.deepcopy(raw))
        assert parsed.problems == () and parsed == parse_spec(with_defaults(copy.deepcopy(raw), schema))
    assert parse_spec(spec(targets={"databases": {"secrets": ["t1"]}})).targets.url_key == "url"


def fan_out(spec: dict[str, Any] | None = None, **targets: Any) -> Any:
    extra = {"database": None} if "databases" in targets else {}
    return migration(targets=targets, **extra, **(spec or {}))


def manifest(m: Any) -> dict[str, Any]:
    return job_manifest(m, decide(observe(m)).create)


def test_a_schema_fan_out_is_one_indexed_job_listing_its_targets() -> None:
    job_spec = manifest(fan_out(schemas=SCHEMAS, maxParallel=2, maxFailed=1))["spec"]
    assert {k: job_spec.get(k) for k in ("completionMode", "completions", "parallelism", "maxFailedIndexes")} == {
        "completionMode": "Indexed",
        "completions": 3,
        "parallelism": 2,
        "maxFailedIndexes": 1,
    }
    assert job_spec["backoffLimitPerIndex"] == 2 and "backoffLimit" not in job_spec  # no Job-wide limit
    env = {e["name"]: e for e in job_spec["template"]["spec"]["containers"][0]["env"]}
    assert env["LOCKGATE_TARGETS"]["value"] == "tenant_a,tenant_b,tenant_c"
    assert env["LOCKGATE_TARGET_KIND"]["value"] == "schema"
    assert env["LOCKGATE_DATABASE_URL"]["valueFrom"] == {"secretKeyRef": {"name": "db", "key": "url"}}
    few = manifest(fan_out(schemas=["a"], maxParallel=8))["spec"]
    assert few["parallelism"] == 1 and "maxFailedIndexes" not in few


def test_a_database_fan_out_mounts_only_the_targets_secrets_each_optional() -> None:
    pod = manifest(fan_out(databases={"secrets": ["t1-db", "t2-db"], "key": "dsn"}))["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "LOCKGATE_DATABASE_URL" not in {e["name"] for e in container["env"]}
    [volume] = [v for v in pod["volumes"] if "projected" in v]
    assert volume["projected"]["sources"] == [
        {"secret": {"name": n, "items": [{"key": "dsn", "path": n}], "optional": True}} for n in ("t1-db", "t2-db")
    ]
    assert {"name": volume["name"], "mountPath": "/var/run/lockgate/targets", "readOnly": True} in container[
        "volumeMounts"
    ]


def test_a_single_database_job_is_unchanged() -> None:
    job_spec = manifest(migration())["spec"]
    assert job_spec["backoffLimit"] == 2 and "completionMode" not in job_spec
    assert "LOCKGATE_TARGETS" not in {e["name"] for e in job_spec["template"]["spec"]["containers"][0]["env"]}


def test_views_read_an_indexed_jobs_targets_indexes_and_pods() -> None:
    body = manifest(fan_out(schemas=SCHEMAS))
    body["metadata"]["uid"] = "j1"
    body["status"] = {"completedIndexes": "0,2", "failedIndexes": "1", "active": 0}
    view = job_view(body)
    assert view.targets == tuple(SCHEMAS) and view.completed_indexes == "0,2" and view.failed_indexes == "1"
    pod = {
        "metadata": {
            "name": "p",
            "labels": {"job-name": "j"},
            "annotations": {"batch.kubernetes.io/job-completion-index": "1"},
        }
    }
    assert job_pod_view(pod).index == 1
    assert indexes("0,2-4,7") == {0, 2, 3, 4, 7} and indexes("") == set()


def index_pod(job_name: str, index: int, exit_code: int, error: str | None = None) -> JobPodView:
    said = {"script": "V3__items.sql", "line": 1, "sqlstate": "42P07", "message": error} if error else None
    message = json.dumps({"exit_code": exit_code, "applied_count": 0 if error else 2, "duration_ms": 5, "error": said})
    report = parse_report(message, exit_code)
    return JobPodView(f"{job_name}-{index}", job_name, "2026-11-21T11:59:29Z", report, index=index)


def indexed(name: str, state: Result, done: str, failed: str = "", active: int = 0, attempt: str = "") -> Any:
    return dataclasses.replace(
        job(name, state=state, attempt=attempt),
        targets=tuple(SCHEMAS),
        completed_indexes=done,
        failed_indexes=failed,
        active=active,
    )


def test_a_failing_target_is_named_with_its_cause_the_others_finish_and_the_gate_stays_closed() -> None:
    m = fan_out(schemas=SCHEMAS)
    first = decide(observe(m))
    name, attempt = first.create.name, first.create.attempt
    running = decide(observe(applied(m, first), jobs=[indexed(name, Result.RUNNING, "0", "1", active=1)]))
    targets = running.status["targets"]
    assert targets["phases"]["expand"] | {"job": name} == {
        "job": name,
        "total": 3,
        "succeeded": 1,
        "failed": 1,
        "running": 1,
        "pending": 0,
    }
    assert targets["summary"] == "1/3 expand, 1 failed" and running.status["phase"] == "Expanding"
    pods = [index_pod(name, 0, 0), index_pod(name, 1, 1, 'relation "items" already exists'), index_pod(name, 2, 0)]
    failed = decide(
        observe(applied(m, running), jobs=[indexed(name, Result.FAILED, "0,2", "1", attempt=attempt)], job_pods=pods)
    )
    assert conditions(failed)["Stalled"] == "True" and conditions(failed)["Ready"] == "False"
    assert "appliedVersion" not in failed.status  # the gate stays closed for version 3
    cause = 'V3__items.sql line 1: [42P07] relation "items" already exists'
    assert failed.status["targets"]["failed"] == [{"phase": "expand", "target": "tenant_b", "error": cause}]
    [entry] = failed.status["history"]
    assert entry["error"] == f"1 of 3 targets failed: tenant_b: {cause}" and entry["applied"] == 4
    assert entry["targets"]["failures"] == [{"target": "tenant_b", "error": cause}]
    assert "lockgate.dev/retry" in [c for c in failed.status["conditions"] if c["type"] == "Stalled"][0]["message"]
    stalled = applied(m, failed)
    assert decide(observe(stalled)).create is None  # its Job gone (TTL): the failure and its names stay
    assert decide(observe(stalled)).status is None
    retried = decide(observe(dataclasses.replace(stalled, annotations={"lockgate.dev/retry": "1"})))
    assert retried.create is not None and retried.create.name != name


def test_the_gate_opens_when_every_target_expanded() -> None:
    m = fan_out(schemas=SCHEMAS)
    first = decide(observe(m))
    name = first.create.name
    pods = [index_pod(name, i, 0) for i in range(3)]
    done = decide(observe(applied(m, first), jobs=[indexed(name, Result.SUCCEEDED, "0-2")], job_pods=pods))
    assert done.status["appliedVersion"] == "3" and conditions(done)["Ready"] == "True"
    targets = done.status["targets"]
    assert targets["phases"]["expand"]["succeeded"] == 3 and "failed" not in targets
    assert targets["summary"] == "0/3 background"  # claimed at once: the column follows the latest phase
    assert done.status["history"][0]["applied"] == 6


def test_a_tally_names_a_bounded_list_and_counts_the_rest() -> None:
    many = Tally(total=50, succeeded=20, failed=30, failures=tuple((f"t{i}", "boom") for i in range(10)))
    assert many.error().endswith("t9: boom; and 20 more") and many.pending == 0
    assert Tally.from_api(many.to_api(), 50) == many
    assert Tally.from_api({"succeeded": "many", "failures": [{"target": "t1"}]}, 50) == Tally(50)  # edited by hand
    lost = tally(indexed("j", Result.FAILED, "0", "1-2"), ())
    assert lost.failures[0] == ("tenant_b", "its pod failed without a result: kubectl logs job/j --all-pods")


@pytest.mark.parametrize("name", ["schemamigration.yaml", "schemamigration-databases.yaml"])
def test_the_tenants_examples_parse_without_problems(name: str) -> None:
    example = yaml.safe_load((CRD.parents[1] / "examples" / "tenants" / name).read_text())
    parsed = parse_spec(example["spec"])
    assert parsed.problems == () and parsed.targets is not None and len(parsed.targets.names) == 3


def test_a_spent_failure_budget_says_the_job_stopped_the_others() -> None:
    m = fan_out(schemas=SCHEMAS, maxFailed=1)
    first = decide(observe(m))
    name, attempt = first.create.name, first.create.attempt
    stopped = dataclasses.replace(
        indexed(name, Result.FAILED, "", "0-1", attempt=attempt), failed_reason="MaxFailedIndexesExceeded", max_failed=1
    )
    pods = [index_pod(name, i, 1, "boom") for i in (0, 1)]
    failed = decide(observe(applied(m, first), jobs=[stopped], job_pods=pods))
    [entry] = failed.status["history"]
    assert entry["error"].startswith("2 of 3 targets failed: tenant_a: ") and entry["error"].endswith(
        "more indexes failed than spec.targets.maxFailed (1) allows, so the Job stopped the others"
    )
    assert entry["targets"]["pending"] == 1 and failed.status["targets"]["summary"] == "0/3 expand, 2 failed"


def test_a_target_added_after_the_version_expanded_catches_up_while_the_gate_stays_open() -> None:
    m = fan_out(ONLY_EXPAND, schemas=SCHEMAS)
    first = decide(observe(m))
    name = first.create.name
    pods = [index_pod(name, i, 0) for i in range(3)]
    complete = applied(
        m, decide(observe(applied(m, first), jobs=[indexed(name, Result.SUCCEEDED, "0-2")], job_pods=pods))
    )
    assert complete.status["phase"] == "Complete" and decide(observe(complete)).create is None
    grown = fan_out(ONLY_EXPAND, schemas=[*SCHEMAS, "tenant_d"])
    grown = dataclasses.replace(grown, status=complete.status, generation=2)
    catch_up = decide(observe(grown))
    assert catch_up.create is not None and catch_up.create.phase == "expand" and catch_up.create.name != name
    assert catch_up.status["phase"] == "Expanding" and catch_up.status["appliedVersion"] == "3"
    assert conditions(catch_up)["Ready"] == "True" and conditions(catch_up)["Reconciling"] == "True"
    assert (
        "bringing new targets up to 3"
        in [c for c in catch_up.status["conditions"] if c["type"] == "Reconciling"][0]["message"]
    )
    job_view_four = dataclasses.replace(
        indexed(catch_up.create.name, Result.SUCCEEDED, "0-3", attempt=catch_up.create.attempt),
        targets=(*SCHEMAS, "tenant_d"),
    )
    caught_up = decide(observe(applied(grown, catch_up), jobs=[job_view_four]))
    assert caught_up.create is None and caught_up.status["phase"] == "Complete"
    assert caught_up.status["targets"]["summary"] == "4/4 expand"
    reordered = dataclasses.replace(
        applied(grown, caught_up),
        spec=dataclasses.replace(
            grown.spec, targets=dataclasses.replace(grown.spec.targets, names=("tenant_d", *SCHEMAS))
        ),
    )
    assert decide(observe(reordered)).create is None  # the same targets in another order: nothing to catch up


def test_contract_catches_up_for_new_targets_once_their_expand_did() -> None:
    m = fan_out({"background": {"enabled": False}}, schemas=SCHEMAS)
    status = {
        "appliedVersion": "3",
        "contractedVersion": "3",
        "history": [
            {
                "version": "3",
                "phase": p,
                "job": f"j-{p}",
                "attempt": "a",
                "result": "Succeeded",
                "targets": {"total": 3, "succeeded": 3, "covered": "old"},
            }
            for p in ("expand", "contract")
        ],
    }
    grown = dataclasses.replace(m, status=status, generation=2)
    assert decide(observe(grown)).create.phase == "expand"
    status["history"][0]["targets"]["covered"] = digest(tuple(SCHEMAS))
    assert decide(observe(dataclasses.replace(m, status=status, generation=2))).create.phase == "contract"


def test_targets_added_to_a_single_database_migration_get_the_phases_it_already_ran() -> None:
    one = migration(background={"enabled": False}, contract={"enabled": False})
    first = decide(observe(one))
    done = applied(one, decide(observe(applied(one, first), jobs=[job(first.create.name, state=Result.SUCCEEDED)])))
    assert done.status["phase"] == "Complete"
    tenants = fan_out(ONLY_EXPAND, schemas=SCHEMAS)
    catch_up = decide(observe(dataclasses.replace(tenants, status=done.status, generation=2)))
    assert catch_up.create is not None and catch_up.create.phase == "expand" and conditions(catch_up)["Ready"] == "True"


def test_background_progress_is_summed_over_the_tenants_walking() -> None:
    walking = [dataclasses.replace(index_pod("bg", i, 0), finished=None, report=None, started=True) for i in (1, 2)]
    lines = {walking[0].name: Progress("A3__fill.sql", "running", 1000, 10, 40.0, 100.0, 30)}
    lines[walking[1].name] = Progress("A3__fill.sql", "running", 2000, 20, 80.0, 200.0, 5)
    bg = dataclasses.replace(indexed("bg", Result.RUNNING, "0", active=2), phase="background")
    observed = dataclasses.replace(observe(fan_out(schemas=SCHEMAS), jobs=[bg], job_pods=walking), progress=lines)
    progress = progress_status(observed)
    assert progress is not None
    assert (progress["rows"], progress["batches"], progress["rowsPerSecond"], progress["percent"]) == (
        3000,
        30,
        300.0,
        None,
    )
    assert progress["targets"] == {"walking": 2, "done": 1, "total": 3}
    assert progress["summary"] == "3,000 rows, 2 walking, 1/3 done"


def test_a_target_added_while_expand_runs_keeps_the_gate_closed_until_a_job_over_every_target_expanded() -> None:
    m = fan_out(ONLY_EXPAND, schemas=SCHEMAS)
    first = decide(observe(m))
    grown = dataclasses.replace(fan_out(ONLY_EXPAND, schemas=[*SCHEMAS, "tenant_d"]), generation=2)
    old_list = indexed(first.create.name, Result.SUCCEEDED, "0-2", attempt=first.create.attempt)
    finished = decide(observe(applied(grown, first), jobs=[old_list]))
    assert "appliedVersion" not in finished.status and conditions(finished)["Ready"] == "False"
    assert finished.create is not None and finished.create.phase == "expand" and finished.create.name != old_list.name
    every = dataclasses.replace(
        indexed(finished.create.name, Result.SUCCEEDED, "0-3", attempt=finished.create.attempt),
        targets=(*SCHEMAS, "tenant_d"),
    )
    opened = decide(observe(applied(grown, finished), jobs=[old_list, every]))
    assert opened.status["appliedVersion"] == "3" and conditions(opened)["Ready"] == "True"
    assert opened.create is None and opened.status["targets"]["summary"] == "4/4 expand"

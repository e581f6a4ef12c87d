"""spec.targets.schemaQuery through the real CLI and PostgreSQL: each pod of the Job runs the query
itself (read-only), migrates the schemas whose hash falls to its index, each with its own history,
names a listed name that is no plain schema name as a failed target, and reports how many it covered."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from lockgate.shared.targets import shard
from tests.runner_support import Result, history, lockgate, query, write

SCRIPTS = {
    "V1__items.sql": "CREATE TABLE items (id int PRIMARY KEY, owner text NOT NULL DEFAULT current_schema());",
    "V2__seed.sql": "INSERT INTO items (id) VALUES (1);",
}
LISTING = "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant%' ORDER BY random()"
TENANTS = [f"tenant_{i:02}" for i in range(12)]
BAD = "tenant Bad"  # a real schema, but one a plain name cannot be


def run_index(tmp_path: Path, url: str, sql: str, index: int, indexes: int, first: int = 0) -> tuple[Result, dict]:
    report = tmp_path / f"termination-log-{first}-{index}"
    env = {"LOCKGATE_TARGET_KIND": "schema", "LOCKGATE_TARGETS_QUERY": sql, "LOCKGATE_TARGETS_INDEXES": str(indexes)}
    env |= {"LOCKGATE_TARGETS_FIRST_INDEX": str(first)} if first else {}
    env |= {"JOB_COMPLETION_INDEX": str(index), "LOCKGATE_SUMMARY_FILE": str(report)}
    done = lockgate("migrate", "--dir", str(tmp_path / "m"), url=url, **env)
    return done, json.loads(report.read_text())


def test_each_index_migrates_the_schemas_its_query_lists_and_names_a_bad_row(tmp_path: Path, database_url: str) -> None:
    for schema in TENANTS:
        query(database_url, f"CREATE SCHEMA {schema}")
    query(database_url, f'CREATE SCHEMA "{BAD}"')
    write(tmp_path / "m", SCRIPTS)
    reports = {}
    for index in range(3):
        done, said = run_index(tmp_path, database_url, LISTING, index, 3)
        mine = [s for s in TENANTS if shard(s, 3) == index]
        assert said["target_count"] == len(mine) + (shard(BAD, 3) == index)
        if shard(BAD, 3) == index:
            assert done.code == 2 and said["failed_count"] == 1 and said["failed_targets"][0][0] == BAD
            assert "is not a plain name" in said["failed_targets"][0][1]
        else:
            assert done.code == 0 and said["failed_count"] == 0, done.err
        reports[index] = said
    assert sum(r["target_count"] for r in reports.values()) == len(TENANTS) + 1
    for schema in TENANTS:  # every schema exactly once, in its own schema and history
        assert query(database_url, f"SELECT id, owner FROM {schema}.items") == [(1, schema)]
        assert [row[2] for row in history(database_url, f"{schema}.lockgate_schema_history")] == list(SCRIPTS)
    assert query(database_url, "SELECT to_regclass('public.items'), to_regclass('public.lockgate_schema_history')") == [
        (None, None)
    ]
    assert query(database_url, f"SELECT count(*) FROM pg_tables WHERE schemaname = '{BAD}'") == [(0,)]
    again, said = run_index(tmp_path, database_url, LISTING, 0, 3)  # a retried index applies nothing
    assert said["applied_count"] == 0 and again.code in (0, 2)


def test_a_canary_wave_then_the_rest_wave_migrate_every_schema_exactly_once(tmp_path: Path, database_url: str) -> None:
    """canary.count 1 of 4 indexes: the canary Job's one pod takes shard 0, the rest Job's three
    pods (LOCKGATE_TARGETS_FIRST_INDEX 1) shards 1 to 3."""
    for schema in TENANTS:
        query(database_url, f"CREATE SCHEMA {schema}")
    write(tmp_path / "m", {"V1__items.sql": SCRIPTS["V1__items.sql"]})
    canary, said = run_index(tmp_path, database_url, LISTING, 0, 4)
    first = [s for s in TENANTS if shard(s, 4) == 0]
    assert canary.code == 0 and said["target_count"] == len(first) > 0, canary.err
    for schema in TENANTS:  # the canaries alone so far
        migrated = query(database_url, f"SELECT to_regclass('{schema}.items') IS NOT NULL")
        assert migrated == [(schema in first,)]
    counts = [said["target_count"]]
    for index in range(3):
        done, said = run_index(tmp_path, database_url, LISTING, index, 4, first=1)
        assert done.code == 0 and said["failed_count"] == 0, done.err
        counts.append(said["target_count"])
    assert sum(counts) == len(TENANTS)
    for schema in TENANTS:  # every schema V1 exactly once, in its own history
        assert [row[2] for row in history(database_url, f"{schema}.lockgate_schema_history")] == ["V1__items.sql"]
    beyond, _ = run_index(tmp_path, database_url, LISTING, 3, 4, first=1)  # a rest Job with completions 4
    assert beyond.code != 0 and "plus LOCKGATE_TARGETS_FIRST_INDEX 1 is not one of the 4 indexes" in beyond.err


def test_an_index_with_no_schema_succeeds_covering_none(tmp_path: Path, database_url: str) -> None:
    query(database_url, "CREATE SCHEMA tenant_00")
    write(tmp_path / "m", SCRIPTS)
    empty = next(i for i in range(4) if i != shard("tenant_00", 4))
    done, said = run_index(tmp_path, database_url, LISTING, empty, 4)
    assert done.code == 0 and (said["target_count"], said["failed_count"], said["applied_count"]) == (0, 0, 0)
    assert query(database_url, "SELECT to_regclass('public.items')") == [(None,)]  # not the public schema


def test_a_failing_or_writing_query_fails_its_index_quoting_postgres_never_the_url(
    tmp_path: Path, database_url: str
) -> None:
    query(database_url, "CREATE TABLE public.witness (id int)")
    write(tmp_path / "m", SCRIPTS)
    password = urlsplit(database_url).password
    writing = "WITH made AS (INSERT INTO public.witness VALUES (1) RETURNING 'tenant_00') SELECT * FROM made"
    for sql, said_by_postgres in (
        ("SELECT nspname FROM nowhere", '[42P01] relation "nowhere" does not exist'),
        (writing, "[25006] cannot execute SELECT in a read-only transaction"),  # its INSERT, refused
        ("SELECT (1/0)::text", "[22012] division by zero"),
    ):
        done, said = run_index(tmp_path, database_url, sql, 0, 1)
        assert done.code == 2 and f"spec.targets.schemaQuery.sql failed: {said_by_postgres}" in said["message"]
        assert "target_count" not in said  # the operator names the index, its schemas unknown
        assert (not password or password not in done.err + done.out + json.dumps(said)) and database_url not in done.err
    assert query(database_url, "SELECT count(*) FROM public.witness") == [(0,)]


def test_the_query_runs_read_only_under_a_statement_timeout(tmp_path: Path, database_url: str) -> None:
    """What the query's session says about itself comes back as (not plain) schema names, named."""
    write(tmp_path / "m", SCRIPTS)
    settings = "SELECT current_setting('statement_timeout') || ' ' || current_setting('transaction_read_only')"
    done, said = run_index(tmp_path, database_url, settings, 0, 1)
    assert done.code == 2 and said["target_count"] == 1 and said["failed_targets"][0][0] == "1min on"


def test_the_query_example_migrates_each_schema_it_lists(tmp_path: Path, database_url: str) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "tenants"
    spec = yaml.safe_load((example / "schemamigration-query.yaml").read_text())["spec"]
    schemas = ["tenant_acme", "tenant_globex", "tenant_initech"]
    for schema in [*schemas, "tenantx", "public_tenant_x"]:  # the last two: not the pattern's
        query(database_url, f"CREATE SCHEMA {schema}")
    indexes, covered = spec["targets"]["schemaQuery"]["indexes"], 0
    for index in range(indexes):
        report = tmp_path / f"termination-log-{index}"
        env = {
            "LOCKGATE_TARGETS_QUERY": spec["targets"]["schemaQuery"]["sql"],
            "LOCKGATE_TARGETS_INDEXES": str(indexes),
        }
        env |= {
            "LOCKGATE_TARGET_KIND": "schema",
            "JOB_COMPLETION_INDEX": str(index),
            "LOCKGATE_SUMMARY_FILE": str(report),
        }
        done = lockgate(
            "migrate", "--dir", str(example / "migrations"), "--target", spec["version"], url=database_url, **env
        )
        assert done.code == 0, done.err
        covered += json.loads(report.read_text())["target_count"]
    assert covered == len(schemas)
    for schema in schemas:
        assert len(history(database_url, f"{schema}.lockgate_schema_history")) == 2  # V1, V2: expand
    assert query(database_url, "SELECT to_regclass('tenantx.notes'), to_regclass('public_tenant_x.notes')") == [
        (None, None)
    ]

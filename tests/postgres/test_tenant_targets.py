"""A fan-out Job's pod picks its tenant by JOB_COMPLETION_INDEX, through the real CLI and PostgreSQL:
a schema target runs with its schema first on the search_path, its own history table and lock key;
a database target reads its URL from the file the Job mounts for its Secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lockgate.runner.database import advisory_key
from tests.runner_support import history, lockgate, query, write

SCRIPTS = {
    "V1__items.sql": "CREATE TABLE items (id int PRIMARY KEY, owner text NOT NULL DEFAULT current_schema());",
    "V2__seed.sql": "INSERT INTO items (id) VALUES (1);",
}


def in_job(index: int, kind: str, targets: list[str], per_pod: int = 1) -> dict[str, str]:
    env = {"LOCKGATE_TARGET_KIND": kind, "LOCKGATE_TARGETS": ",".join(targets), "JOB_COMPLETION_INDEX": str(index)}
    return env | ({"LOCKGATE_TARGETS_PER_POD": str(per_pod)} if per_pod > 1 else {})


def test_each_index_migrates_its_own_schema_with_its_own_history(tmp_path: Path, database_url: str) -> None:
    schemas = ["tenant_a", "tenant_b", "tenant_c"]
    for schema in schemas:
        query(database_url, f"CREATE SCHEMA {schema}")
    d = write(tmp_path / "m", SCRIPTS)
    for index in (2, 0):  # out of order, as parallel pods finish
        done = lockgate("migrate", "--dir", str(d), url=database_url, **in_job(index, "schema", schemas))
        assert done.code == 0, done.err
        assert f"in schema {schemas[index]}" in done.err + done.out
    for schema in ("tenant_a", "tenant_c"):
        assert query(database_url, f"SELECT id, owner FROM {schema}.items") == [(1, schema)]
        assert [row[2] for row in history(database_url, f"{schema}.lockgate_schema_history")] == list(SCRIPTS)
    assert query(database_url, "SELECT to_regclass('tenant_b.items'), to_regclass('public.items')") == [(None, None)]
    assert query(database_url, "SELECT to_regclass('public.lockgate_schema_history')") == [(None,)]
    # a rerun of a done index applies nothing: a retry of the whole Job is safe
    again = lockgate("migrate", "--dir", str(d), "--json", url=database_url, **in_job(0, "schema", schemas))
    assert again.code == 0 and again.json["applied"] == []
    # each schema locks on its own key
    assert advisory_key("tenant_a.lockgate_schema_history", "expand") != advisory_key(
        "tenant_b.lockgate_schema_history", "expand"
    )


def test_a_pod_of_several_targets_migrates_each_past_a_failing_one_and_names_it(
    tmp_path: Path, database_url: str
) -> None:
    schemas = ["tenant_a", "tenant_b", "tenant_c", "tenant_d", "tenant_e"]
    for schema in schemas:
        query(database_url, f"CREATE SCHEMA {schema}")
    query(database_url, "CREATE TABLE tenant_c.items (id int)")  # V1 collides there, and only there
    d = write(tmp_path / "m", SCRIPTS)
    report = tmp_path / "termination-log"
    env = in_job(0, "schema", schemas, per_pod=4) | {"LOCKGATE_SUMMARY_FILE": str(report)}
    chunk = lockgate("migrate", "--dir", str(d), url=database_url, **env)
    assert chunk.code == 1, chunk.err
    for schema in ("tenant_a", "tenant_b", "tenant_d"):  # before and after the failing one
        assert [row[2] for row in history(database_url, f"{schema}.lockgate_schema_history")] == list(SCRIPTS)
    assert query(database_url, "SELECT to_regclass('tenant_e.items')") == [(None,)]  # index 1's
    cause = 'V1__items.sql line 1: [42P07] relation "items" already exists'
    assert f"1 of 4 targets of this pod failed: tenant_c: {cause}" in chunk.err
    said = json.loads(report.read_text())
    assert (said["exit_code"], said["failed_count"], said["failed_targets"]) == (1, 1, [["tenant_c", cause]])
    assert said["applied_count"] == 6
    last = lockgate("migrate", "--dir", str(d), url=database_url, **in_job(1, "schema", schemas, per_pod=4))
    assert last.code == 0 and "in schema tenant_e" in last.out, last.err


def test_a_schema_that_does_not_exist_fails_its_index_only_and_says_so(tmp_path: Path, database_url: str) -> None:
    query(database_url, "CREATE SCHEMA tenant_a")
    d = write(tmp_path / "m", SCRIPTS)
    missing = lockgate("migrate", "--dir", str(d), url=database_url, **in_job(1, "schema", ["tenant_a", "tenant_x"]))
    assert missing.code == 2
    assert 'schema "tenant_x" does not exist' in missing.err
    assert query(database_url, "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_x'") == [(0,)]


def test_a_script_setting_its_own_search_path_does_not_leak_into_the_next(tmp_path: Path, database_url: str) -> None:
    query(database_url, "CREATE SCHEMA tenant_a")
    d = write(
        tmp_path / "m",
        {
            "V1__elsewhere.sql": "SET search_path = public; CREATE TABLE shared_x (id int);",
            "V2__t.sql": "CREATE TABLE t (id int);",
        },
    )
    done = lockgate("migrate", "--dir", str(d), url=database_url, LOCKGATE_SCHEMA="tenant_a")
    assert done.code == 0, done.err
    assert query(
        database_url, "SELECT to_regclass('public.shared_x') IS NOT NULL, to_regclass('tenant_a.t') IS NOT NULL"
    ) == [(True, True)]


def test_a_database_target_reads_its_url_from_the_mounted_secret(tmp_path: Path, database_url: str) -> None:
    mounted = tmp_path / "targets"
    mounted.mkdir()
    (mounted / "tenant-one-db").write_text(database_url + "\n")
    d = write(tmp_path / "m", SCRIPTS)
    env = {"LOCKGATE_TARGET_SECRETS_DIR": str(mounted)}
    targets = ["tenant-one-db", "tenant-two-db"]
    done = lockgate("migrate", "--dir", str(d), **env, **in_job(0, "database", targets))
    assert done.code == 0, done.err
    assert [row[2] for row in history(database_url)] == list(SCRIPTS)
    missing = lockgate("migrate", "--dir", str(d), "--json", **env, **in_job(1, "database", targets))
    assert missing.code == 2
    assert "the Secret tenant-two-db or its URL key does not exist" in missing.json["message"]
    assert database_url not in missing.out + missing.err


@pytest.mark.parametrize(
    ("index", "targets", "said"),
    [("3", "a,b", "is not an index of the 2 targets"), (None, "a", "is not an index"), ("0", "", "lists no target")],
)
def test_a_job_that_does_not_match_its_target_list_is_refused(
    tmp_path: Path, database_url: str, index: str | None, targets: str, said: str
) -> None:
    env = {"LOCKGATE_TARGET_KIND": "schema", "LOCKGATE_TARGETS": targets}
    if index is not None:
        env["JOB_COMPLETION_INDEX"] = index
    refused = lockgate("migrate", "--dir", str(write(tmp_path / "m", SCRIPTS)), url=database_url, **env)
    assert refused.code == 2 and said in refused.err


def test_the_tenants_example_migrates_each_of_its_schemas(database_url: str) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "tenants"
    spec = yaml.safe_load((example / "schemamigration.yaml").read_text())["spec"]
    schemas = spec["targets"]["schemas"]
    for schema in schemas:
        query(database_url, f"CREATE SCHEMA {schema}")
    for phase in ("expand", "contract"):
        for index in range(len(schemas)):
            env = in_job(index, "schema", schemas)
            done = lockgate(
                "migrate",
                "--dir",
                str(example / "migrations"),
                "--phase",
                phase,
                "--target",
                spec["version"],
                url=database_url,
                **env,
            )
            assert done.code == 0, done.err
    for schema in schemas:
        assert query(
            database_url, f"INSERT INTO {schema}.notes (body, created_at) VALUES ('hi', now()) RETURNING done"
        ) == [(False,)]
        assert len(history(database_url, f"{schema}.lockgate_schema_history")) == 3

"""Schemas listed by a SQL query on the real node: one SchemaMigration whose spec.targets.schemaQuery
lists 30 schemas is one Indexed Job of 4 indexes; each pod runs the query, migrates the schemas
whose hash falls to its index, and reports how many; the gate opens once every index succeeded,
every schema has the version exactly once, and status.targets counts the 30."""

from __future__ import annotations

from typing import Any

import pytest

from devcluster.kube import Kube
from devcluster.workloads import condition
from tests.cluster.test_tenants_e2e import lockgate_status
from tests.operator_fixtures import Migrations
from tests.runner_support import history, query
from tests.tenants_support import phase_is

pytestmark = pytest.mark.timeout(300, func_only=True)
SCRIPTS = {"V1__items.sql": "CREATE TABLE items (id int PRIMARY KEY, tenant text NOT NULL DEFAULT current_schema());"}
TENANTS = [f"tenant_{i:02}" for i in range(30)]
LISTING = "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\\_%'"


def create_schemas(database_url: str, count: int) -> None:
    """tenant_00 ... : the first `count` of TENANTS."""
    loop = f"FOR i IN 0..{count - 1} LOOP EXECUTE format('CREATE SCHEMA tenant_%s', lpad(i::text, 2, '0')); END LOOP"
    query(database_url, f"DO $$ BEGIN {loop}; END $$")


def expand(migrations: Migrations, name: str, targets: dict[str, Any]) -> None:
    """A SchemaMigration of version 1 over `targets`, expand only, each index tried once."""
    scripts = migrations.scripts(f"{name}-r1", SCRIPTS)
    off = {"enabled": False}
    migrations.create(name, "1", scripts, targets=targets, backoffLimit=0, background=off, contract=off)


def test_a_schema_query_over_30_schemas_in_4_indexes_opens_the_gate_once_each_has_the_version(
    kube: Kube, namespace: str, migrations: Migrations, run_operator: Any, database_url: str, cluster: Any
) -> None:
    create_schemas(database_url, 30)
    run_operator()
    expand(migrations, "queried", {"schemaQuery": {"sql": LISTING, "indexes": 4}, "maxParallel": 4})
    done = migrations.wait("queried", phase_is("Complete"), timeout=180)
    status = done["status"]
    assert status["appliedVersion"] == "1" and condition(done, "Ready")["status"] == "True"
    assert status["targets"]["total"] == 30 and status["targets"]["summary"] == "30/30 expand"
    assert status["targets"]["schemaQuery"] == {"indexes": 4} and "failed" not in status["targets"]
    assert status["history"][0]["targets"]["total"] == 30
    for tenant in TENANTS:  # each exactly once, in its own schema
        assert [row[2:] for row in history(database_url, f"{tenant}.lockgate_schema_history")] == [
            ("V1__items.sql", True)
        ]
    [job] = migrations.jobs("queried")
    assert (job.spec.completion_mode, job.spec.completions, job.spec.parallelism) == ("Indexed", 4, 4)
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert env["LOCKGATE_TARGETS_QUERY"] == LISTING and "LOCKGATE_TARGETS" not in env
    detail = lockgate_status(cluster, namespace, "queried", "--targets", "--json")
    assert {t["target"]: t["phases"]["expand"]["state"] for t in detail["targets"]} == {
        f"index {i}": "succeeded" for i in range(4)
    }


def test_a_query_canary_of_1_of_4_indexes_completes_before_the_rest_job_is_created(
    kube: Kube, namespace: str, migrations: Migrations, run_operator: Any, database_url: str, cluster: Any
) -> None:
    """canary.count 1 with schemaQuery: the canary Job migrates shard 0's schemas, and only once it
    completed is the rest Job (3 indexes, from shard 1 on) created; every schema has V1 exactly once."""
    create_schemas(database_url, 12)
    run_operator()
    targets = {"schemaQuery": {"sql": LISTING, "indexes": 4}, "maxParallel": 4, "canary": {"count": 1}}
    expand(migrations, "canaried", targets)
    done = migrations.wait("canaried", phase_is("Complete"), timeout=150)
    status = done["status"]
    assert status["appliedVersion"] == "1" and condition(done, "Ready")["status"] == "True"
    assert status["targets"]["total"] == 12 and status["targets"]["summary"] == "12/12 expand"
    assert [e["wave"] for e in status["history"]] == ["canary", "rest"]
    assert sum(e["targets"]["total"] for e in status["history"]) == 12
    for tenant in TENANTS[:12]:  # each exactly once, in its own schema
        assert [row[2:] for row in history(database_url, f"{tenant}.lockgate_schema_history")] == [
            ("V1__items.sql", True)
        ]
    jobs = {j.metadata.labels["lockgate.dev/wave"]: j for j in migrations.jobs("canaried")}
    canary, rest = jobs["canary"], jobs["rest"]
    assert (canary.spec.completions, rest.spec.completions) == (1, 3)
    assert canary.status.completion_time <= rest.metadata.creation_timestamp  # the rest only after the canary
    env = {e.name: e.value for e in rest.spec.template.spec.containers[0].env}
    assert env["LOCKGATE_TARGETS_FIRST_INDEX"] == "1" and env["LOCKGATE_TARGETS_INDEXES"] == "4"
    detail = lockgate_status(cluster, namespace, "canaried", "--targets", "--json")
    assert {t["target"]: t["phases"]["expand"]["state"] for t in detail["targets"]} == {
        f"index {i}": "succeeded" for i in range(4)
    }

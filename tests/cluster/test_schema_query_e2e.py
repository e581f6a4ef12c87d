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


def test_a_schema_query_over_30_schemas_in_4_indexes_opens_the_gate_once_each_has_the_version(
    kube: Kube, namespace: str, migrations: Migrations, run_operator: Any, database_url: str, cluster: Any
) -> None:
    query(
        database_url,
        "DO $$ BEGIN FOR i IN 0..29 LOOP EXECUTE format('CREATE SCHEMA tenant_%s', lpad(i::text, 2, '0')); END LOOP; END $$",
    )
    run_operator()
    migrations.create(
        "queried",
        "1",
        migrations.scripts("queried-r1", SCRIPTS),
        targets={"schemaQuery": {"sql": LISTING, "indexes": 4}, "maxParallel": 4},
        backoffLimit=0,
        background={"enabled": False},
        contract={"enabled": False},
    )
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

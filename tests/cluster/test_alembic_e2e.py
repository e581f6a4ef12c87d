"""The Alembic example (examples/alembic) on the real node: its SchemaMigration runs `alembic upgrade
expand@head` in the expand Job and `alembic upgrade contract@head` (the script directory's contract
branch) in the contract Job, and the app's pods wait at the gate until expand succeeded. A release
whose expand adds a failing revision (alembic.ini's `broken` section) stalls with the database's error
as Alembic prints it and lets no new pod through; the fixed spec goes on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devcluster.kube import Kube
from devcluster.postgres import in_cluster_url
from devcluster.workloads import gated_deployment
from tests.gated_support import GatedApp, example_migration, required, wait_for
from tests.runner_support import query

ALEMBIC = Path(__file__).resolve().parents[2] / "examples" / "alembic"
IMAGE = "lockgate-alembic:dev"
BROKEN_EXPAND = ["alembic", "-n", "broken", "upgrade", "expand@head"]  # the scripts plus broken/e3_broken.py
BROKEN_LINE = 'psycopg.errors.UndefinedTable) relation "account_nicknames" does not exist'
COLUMNS = "SELECT column_name FROM information_schema.columns WHERE table_name = 'accounts' ORDER BY 1"
HEADS = "SELECT version_num FROM alembic_version ORDER BY 1"


@pytest.mark.timeout(600)
def test_alembic_branches_are_expand_and_contract_and_a_broken_revision_stalls(
    cluster: Any, kube: Kube, namespace: str, database_url: str, run_operator: Callable[..., Any]
) -> None:
    run_operator()
    migration = example_migration(ALEMBIC / "schemamigration.yaml", IMAGE)
    accounts = GatedApp(
        kube, namespace, "accounts-web", "accounts", [migration, gated_deployment("accounts-web", "accounts", "2")]
    )
    accounts.secrets(in_cluster_url(database_url, cluster.node_ip), "accounts-db")

    accounts.create("Deployment")
    accounts.wait_held(2)
    accounts.create("SchemaMigration")
    wait_for("release 2", lambda: accounts.released("2"))
    accounts.assert_ready_after_expand()
    assert query(database_url, HEADS) == [("c2",)]  # contract@head ran in the contract Job
    assert query(database_url, COLUMNS) == [("email",), ("id",), ("name",)]

    # Release 3's expand has a revision that fails: Stalled with the database's error, the new pods wait.
    accounts.patch_migration({"version": "3", "expand": {"command": BROKEN_EXPAND}})
    accounts.require("3")
    accounts.assert_stalls_with(BROKEN_LINE, "3")
    assert query(database_url, HEADS) == [("c2",)]  # one transaction: e3's column went with it
    assert ("nickname",) not in query(database_url, COLUMNS)

    accounts.patch_migration({"expand": migration["spec"]["expand"]})  # the fixed image, here: without e3
    wait_for("release 3", lambda: accounts.released("3"))
    assert {required(p) for p in accounts.pods()} == {"3"}

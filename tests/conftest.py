"""Shared fixtures (a real PostgreSQL server for the session, a fresh database per test) and the
test tiers: each test is marked by what it uses, derived from its fixtures (see tests/tiers.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from devcluster.node import POD_CIDR, host_node_ip
from devcluster.postgres import ExternalPostgres, PostgresServer, standby_of
from devcluster.processes import ComponentError
from tests.tiers import Tier, misplaced, tier_of

pytest_plugins = ["devcluster.fixtures", "tests.operator_fixtures", "tests.chart_release"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer | ExternalPostgres]:
    external = os.environ.get("LOCKGATE_TEST_DATABASE_URL")
    server = ExternalPostgres(external) if external else PostgresServer(pod_access=pod_access()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    """A local server of the module's own, for tests that reconfigure it or stream from it
    (also when LOCKGATE_TEST_DATABASE_URL names a server elsewhere)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def standby(own_postgres: PostgresServer) -> Iterator[PostgresServer]:
    """A hot streaming standby of own_postgres, named replica1 in pg_stat_replication."""
    with standby_of(own_postgres, "replica1") as server:
        yield server


def pytest_configure(config: pytest.Config) -> None:
    for tier in Tier:
        config.addinivalue_line("markers", f"{tier.value}: {tier.description}")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier and refuse files outside their tier's folder; one local node per
    host, so tests that start their own cluster run before the session's starts."""
    tiers = [(item.path, tier_of(item)) for item in items]
    for item, (_, tier) in zip(items, tiers, strict=True):
        item.add_marker(tier.value)
    whole_files = not any("::" in arg for arg in config.args) and not config.getoption("lf", False)
    if moves := misplaced(tiers, whole_files):
        raise pytest.UsageError("test files outside their tier's folder:\n  " + "\n  ".join(moves))
    items.sort(key=lambda item: item.get_closest_marker("own_cluster") is None)


def pod_access() -> tuple[str, str] | None:
    """Where the local node's pods reach the server: none when the tests use another cluster."""
    if os.environ.get("LOCKGATE_TEST_KUBECONFIG"):
        return None
    try:
        return host_node_ip(), POD_CIDR
    except ComponentError:
        return None  # no address pods could use: runner tests still run; the cluster will say why


@pytest.fixture
def database_url(postgres: PostgresServer | ExternalPostgres) -> str:
    """A new, empty database for one test."""
    return postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")

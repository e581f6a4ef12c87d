"""Shared fixtures: a real PostgreSQL server for the session, a fresh database per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.postgres import ExternalPostgres, PostgresServer

pytest_plugins = ["tests.cluster.fixtures", "tests.operator_fixtures"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer | ExternalPostgres]:
    external = os.environ.get("LOCKGATE_TEST_DATABASE_URL")
    server = ExternalPostgres(external) if external else PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def database_url(postgres: PostgresServer | ExternalPostgres) -> str:
    """A new, empty database for one test."""
    return postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")

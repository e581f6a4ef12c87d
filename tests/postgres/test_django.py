"""The seed situation, for real: Django replicas that each run `manage.py migrate` at start-up.

examples/django's data migration (ledger 0002) inserts a row per run and works 3 s first. Release 1
(ledger 0001) is applied; then N replicas of release 2 start at once. Without lockgate the data
migration runs more than once (the negative control); under `lockgate exec` exactly once.
"""

from __future__ import annotations

import pytest

from tests.django_support import EXPAND_MIGRATIONS, LOCKGATE_EXEC, MANAGE, MIGRATE, Run, race, run
from tests.runner_support import query

REPLICAS = [3, 6]


def release_1(url: str) -> None:
    done = run([*MANAGE, "migrate", "--noinput", "ledger", "0001_initial"], url)
    assert done.code == 0, done.err


def django_migrations(url: str) -> list[tuple[object, ...]]:
    return query(url, "SELECT app, name FROM django_migrations ORDER BY id")


def seeds(url: str) -> int:
    return int(query(url, "SELECT count(*) FROM ledger_seed")[0][0])


def outcome(runs: list[Run]) -> str:
    return "; ".join(f"exit {r.code}: {r.last_line}" for r in runs)


@pytest.mark.parametrize("replicas", REPLICAS)
def test_replicas_migrating_at_start_up_run_the_data_migration_more_than_once(replicas: int, database_url: str) -> None:
    """The negative control: nothing in Django stops the race (django_migrations has no unique key)."""
    release_1(database_url)
    runs = race(MIGRATE, database_url, replicas)
    print(f"{replicas} replicas without lockgate: {seeds(database_url)} seed rows; {outcome(runs)}")
    assert seeds(database_url) > 1, outcome(runs)
    recorded = django_migrations(database_url)
    assert recorded.count(("ledger", "0002_seed")) > 1, recorded
    # Whoever lost the race for the schema change fails on Django's own DDL, not silently.
    assert all("already exists" in r.last_line for r in runs if r.code != 0), outcome(runs)


@pytest.mark.parametrize("replicas", REPLICAS)
def test_under_lockgate_exec_the_data_migration_runs_once(replicas: int, database_url: str) -> None:
    release_1(database_url)
    runs = race([*LOCKGATE_EXEC, *MIGRATE], database_url, replicas)
    assert [r.code for r in runs] == [0] * replicas, outcome(runs)
    assert seeds(database_url) == 1
    assert django_migrations(database_url) == EXPAND_MIGRATIONS
    assert sum("Applying ledger.0002_seed... OK" in r.out for r in runs) == 1
    assert sum("No migrations to apply." in r.out for r in runs) == replicas - 1
    exec_runs = query(database_url, "SELECT success FROM lockgate_schema_history WHERE phase = 'exec'")
    assert exec_runs == [(True,)] * replicas


def test_expand_then_contract_as_the_phases_run_them(database_url: str) -> None:
    """The expand Job's `migrate` keeps release 1's column; LOCKGATE_PHASE=contract (set in the contract
    Job) adds ledger_contract, which drops it; a later expand does not undo or repeat anything."""
    columns = "SELECT column_name FROM information_schema.columns WHERE table_name = 'ledger_note' ORDER BY 1"
    release_1(database_url)
    assert run(MIGRATE, database_url, LOCKGATE_PHASE="expand").code == 0
    assert query(database_url, columns) == [("body",), ("id",), ("text",)]
    query(database_url, "INSERT INTO ledger_note (text) VALUES ('release 2 writes no body')")
    contract = run(MIGRATE, database_url, LOCKGATE_PHASE="contract")
    assert contract.code == 0 and "Applying ledger_contract.0001_drop_note_body... OK" in contract.out, contract.err
    assert query(database_url, columns) == [("id",), ("text",)]
    again = run(MIGRATE, database_url, LOCKGATE_PHASE="expand")
    assert again.code == 0 and "No migrations to apply." in again.out
    assert django_migrations(database_url) == [*EXPAND_MIGRATIONS, ("ledger_contract", "0001_drop_note_body")]


def test_a_failing_migration_ends_with_djangos_error_line_and_is_recorded(database_url: str) -> None:
    failed = run([*LOCKGATE_EXEC, *MIGRATE], database_url, LEDGER_BROKEN_MIGRATION="1")
    assert failed.code == 1
    lines = failed.err.strip().splitlines()
    assert lines[-2] == "RuntimeError: ledger_broken 0001: price list missing, cannot backfill notes", failed.err
    assert lines[-1].startswith("lockgate: python exited 1 after")
    assert query(database_url, "SELECT success FROM lockgate_schema_history WHERE phase = 'exec'") == [(False,)]
    # Each migration commits on its own: what came before the broken one stays applied.
    assert django_migrations(database_url) == EXPAND_MIGRATIONS
    fixed = run([*LOCKGATE_EXEC, *MIGRATE], database_url)
    assert fixed.code == 0 and "No migrations to apply." in fixed.out

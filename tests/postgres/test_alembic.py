"""The Alembic example (examples/alembic) as a SchemaMigration's phases run it: the real `alembic
upgrade` on a real PostgreSQL, expand then contract, straight and under `lockgate exec`; and a broken
revision, whose error line is what the operator would put in status."""

from __future__ import annotations

import sys
from pathlib import Path

from lockgate.shared.report import parse_report
from tests.django_support import LOCKGATE_EXEC, Run, race, run
from tests.runner_support import query

ALEMBIC = Path(__file__).resolve().parents[2] / "examples" / "alembic"
UPGRADE = [sys.executable, "-m", "alembic", "upgrade"]
EXPAND = [*UPGRADE, "expand@head"]
CONTRACT = [*UPGRADE, "contract@head"]
UNDEFINED_TABLE = 'psycopg.errors.UndefinedTable) relation "account_nicknames" does not exist'
COLUMNS = "SELECT column_name FROM information_schema.columns WHERE table_name = 'accounts' ORDER BY 1"
BROKEN_EXPAND = [sys.executable, "-m", "alembic", "-n", "broken", "upgrade", "expand@head"]  # + broken/e3


def heads(url: str) -> list[tuple[object, ...]]:
    return query(url, "SELECT version_num FROM alembic_version ORDER BY 1")


def alembic(command: list[str], url: str, cwd: Path = ALEMBIC) -> Run:
    return run(command, url, cwd=cwd)


def test_expand_then_contract_as_the_phases_run_them(database_url: str) -> None:
    assert alembic([*UPGRADE, "e1"], database_url).code == 0  # release 1
    query(database_url, "INSERT INTO accounts (name, legacy_code) VALUES ('release 1', 'R1')")
    expand = alembic(EXPAND, database_url)
    assert expand.code == 0, expand.err
    assert query(database_url, COLUMNS) == [("email",), ("id",), ("legacy_code",), ("name",)]
    assert heads(database_url) == [("e2",)]  # the contract branch has not run
    query(database_url, "INSERT INTO accounts (name, email) VALUES ('release 2', 'a@example.com')")
    contract = alembic(CONTRACT, database_url)
    assert contract.code == 0, contract.err
    assert query(database_url, COLUMNS) == [("email",), ("id",), ("name",)]
    assert heads(database_url) == [("c2",)]  # Alembic keeps heads only: c2 depends on e2, so covers it
    again = alembic(EXPAND, database_url)
    assert again.code == 0 and "Running upgrade" not in again.err and heads(database_url) == [("c2",)]


def test_racing_expands_under_lockgate_exec_run_one_at_a_time(database_url: str) -> None:
    runs = race([*LOCKGATE_EXEC, *EXPAND], database_url, 3, cwd=ALEMBIC)
    assert [r.code for r in runs] == [0, 0, 0], [r.err for r in runs]
    assert sum("Running upgrade  -> e1" in r.err for r in runs) == 1  # the others found it done
    assert heads(database_url) == [("e2",)]
    exec_runs = query(database_url, "SELECT script, success FROM lockgate_schema_history WHERE phase = 'exec'")
    assert exec_runs == [(Path(sys.executable).name, True)] * 3


def test_a_broken_revision_reports_the_databases_error_line_and_applies_nothing(database_url: str) -> None:
    """A release whose expand adds broken/e3 (alembic.ini's `broken` section), then the fixed one."""
    assert alembic(EXPAND, database_url).code == 0
    failed = alembic([*LOCKGATE_EXEC, *BROKEN_EXPAND], database_url)
    assert failed.code == 1, failed.err
    # What the operator shows: the Job's log tail (FallbackToLogsOnError), as status keeps it.
    error = parse_report(failed.err, failed.code).error or ""
    print(f"status would say: ...{error[-400:]}")
    assert UNDEFINED_TABLE in error
    assert error.rstrip().splitlines()[-1].startswith("lockgate: python")
    assert heads(database_url) == [("e2",)]  # one transaction: nickname's column went with it
    assert ("nickname",) not in query(database_url, COLUMNS)
    fixed = alembic([*LOCKGATE_EXEC, *EXPAND], database_url)
    assert fixed.code == 0 and heads(database_url) == [("e2",)]

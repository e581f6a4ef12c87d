"""Another tool's log tail as the Stalled message: Flyway's own error line, not its banner."""

from __future__ import annotations

from lockgate.shared.report import ERROR_EXCERPT, parse_report

# `flyway migrate` (11.14.1, examples/flyway) failing on V3__broken.sql, as its container log ends;
# the temporary path and the port are replaced.
FLYWAY_FAILURE = """\
Flyway OSS Edition 11.14.1 by Redgate

See release notes here: https://rd.gt/416ObMi
Database: jdbc:postgresql://db:5432/shop (PostgreSQL 15.18)
Successfully validated 3 migrations (execution time 00:00.040s)
Current version of schema "public": 2
Migrating schema "public" to version "3 - broken"
ERROR: Migration of schema "public" to version "3 - broken" failed! Changes successfully rolled back.
ERROR: Failed to execute script V3__broken.sql
---------------------------------------
SQL State  : 42701
Error Code : 0
Message    : ERROR: column "customer_key" of relation "orders" already exists
Location   : sql/expand/V3__broken.sql (sql/expand/V3__broken.sql)
Line       : 2
Statement  : Run Flyway with -X option to see the actual statement causing the problem

Caused by: Failed to execute script V3__broken.sql
---------------------------------------
SQL State  : 42701
Error Code : 0
Message    : ERROR: column "customer_key" of relation "orders" already exists
Location   : sql/expand/V3__broken.sql (sql/expand/V3__broken.sql)
Line       : 2
Statement  : Run Flyway with -X option to see the actual statement causing the problem

Caused by: org.postgresql.util.PSQLException: ERROR: column "customer_key" of relation "orders" already exists
"""


def test_a_flyway_failure_becomes_flyways_own_error_lines() -> None:
    error = parse_report(FLYWAY_FAILURE, 1).error
    assert error is not None and len(error) <= ERROR_EXCERPT
    assert error.startswith('ERROR: Migration of schema "public" to version "3 - broken" failed!')
    assert "SQL State  : 42701" in error
    assert 'Message    : ERROR: column "customer_key" of relation "orders" already exists' in error


def test_a_log_without_an_error_line_is_kept_from_its_start() -> None:
    assert parse_report("Traceback (most recent call last):\nValueError: no", 1).error == (
        "Traceback (most recent call last):\nValueError: no"
    )
    assert parse_report(FLYWAY_FAILURE, 0).error is None  # a tool that succeeded has no error

"""Phase-aware lint rules (pure) and the `lockgate lint` command."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.runner.lint import lint_script
from lockgate.runner.scripts import Script, checksum, parse_name
from tests.runner_support import lockgate, write


def findings(name: str, sql: str) -> list[tuple[int | None, str, str]]:
    kind, version, description = parse_name(name)
    return [
        (f.line, f.severity, f.rule) for f in lint_script(Script(kind, version, description, name, sql, checksum(sql)))
    ]


@pytest.mark.parametrize(
    ("sql", "rule"),
    [
        ("DROP TABLE users;", "drop-in-expand"),
        ("ALTER TABLE users DROP COLUMN name;", "drop-in-expand"),
        ("TRUNCATE users;", "drop-in-expand"),
        ("ALTER TABLE users RENAME COLUMN name TO full_name;", "rename-in-expand"),
        ("ALTER TABLE users RENAME TO people;", "rename-in-expand"),
        ("ALTER TABLE users ADD COLUMN age int NOT NULL;", "not-null-without-default"),
    ],
)
def test_breaking_changes_are_errors_in_expand_and_fine_in_contract(sql: str, rule: str) -> None:
    assert (1, "error", rule) in findings("V1__x.sql", sql)
    assert not [f for f in findings("C1__x.sql", sql) if f[1] == "error"]


@pytest.mark.parametrize(
    ("sql", "rule"),
    [
        ("CREATE INDEX users_name ON users (name);", "blocking-index"),
        ("CREATE INDEX CONCURRENTLY users_name ON users (name);", "concurrent-index-not-idempotent"),
        ("ALTER TABLE users ALTER COLUMN id TYPE bigint;", "column-type-change"),
        ("ALTER TABLE users ALTER COLUMN name SET NOT NULL;", "set-not-null"),
        ("ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();", "volatile-default"),
        ("ALTER TABLE users ADD CONSTRAINT fk FOREIGN KEY (org) REFERENCES orgs (id);", "constraint-not-valid"),
        ("ALTER TABLE users ADD CONSTRAINT u UNIQUE (email);", "constraint-builds-index"),
    ],
)
def test_locking_hazards_are_warnings_with_advice(sql: str, rule: str) -> None:
    assert (1, "warning", rule) in findings("V1__x.sql", sql)


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_name ON users (name);",
        "ALTER TABLE users ADD COLUMN created timestamptz DEFAULT now();",
        "ALTER TABLE users ADD COLUMN age int NOT NULL DEFAULT 0;",
        "ALTER TABLE users ADD CONSTRAINT fk FOREIGN KEY (org) REFERENCES orgs (id) NOT VALID;",
        "ALTER TABLE users VALIDATE CONSTRAINT fk;",
        "CREATE TABLE fresh (id int NOT NULL); CREATE INDEX ON fresh (id); ALTER TABLE fresh ADD COLUMN x int NOT NULL;",
    ],
)
def test_safe_patterns_pass_clean(sql: str) -> None:
    assert findings("V1__x.sql", sql) == []


def test_destructive_changes_are_errors_in_background_too() -> None:
    assert (1, "error", "drop-in-background") in findings("A1__x.sql", "DROP TABLE old;")


def test_mixing_outside_statements_is_flagged() -> None:
    assert (2, "warning", "mixed-transaction") in findings(
        "V1__x.sql", "SELECT 1;\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (x);"
    )


def test_a_file_can_allow_a_rule_it_knows_is_safe() -> None:
    assert (
        findings("V1__x.sql", "-- lockgate:allow blocking-index (table has 10 rows)\nCREATE INDEX i ON small (x);")
        == []
    )


def test_lint_command_exit_codes_and_json(tmp_path: Path) -> None:
    clean = write(tmp_path / "clean", {"V1__a.sql": "CREATE TABLE a (id int);"})
    assert lockgate("lint", "--dir", str(clean)).code == 0
    bad = write(
        tmp_path / "bad",
        {
            "V1__a.sql": "CREATE TABLE a (id int);",
            "V2__drop.sql": "\nDROP TABLE a;",
            "V3__idx.sql": "CREATE INDEX i ON a (id);",
        },
    )
    result = lockgate("lint", "--dir", str(bad), "--json")
    assert result.code == 4
    assert (result.json["errors"], result.json["warnings"]) == (1, 1)
    assert {(f["script"], f["line"], f["rule"]) for f in result.json["findings"]} == {
        ("V2__drop.sql", 2, "drop-in-expand"),
        ("V3__idx.sql", 1, "blocking-index"),
    }
    human = lockgate("lint", "--dir", str(bad))
    assert "V2__drop.sql:2: error: [drop-in-expand]" in human.out

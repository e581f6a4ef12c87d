"""Phase-aware lint rules (pure) and the `lockgate lint` command."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.runner.lint import lint_script, lint_scripts
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
    clean = write(
        tmp_path / "clean",
        {
            "V1__a.sql": "CREATE TABLE a (id int, name varchar(10)); CREATE INDEX ON a (id);",
            "V2__view.sql": "DROP VIEW IF EXISTS v; CREATE VIEW v AS SELECT id FROM a;",
            "V10__widen.sql": "ALTER TABLE a ALTER COLUMN name TYPE varchar(20);",
        },
    )
    assert lockgate("lint", "--dir", str(clean)).code == 0
    assert lockgate("lint", "--dir", str(clean), "--json").json == {"findings": [], "errors": 0, "warnings": 0}
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


def rules(sql: str) -> list[tuple[str, str]]:
    """The (severity, rule) pairs lint reports for an expand script."""
    return [(severity, rule) for _, severity, rule in findings("V1__x.sql", sql)]


@pytest.mark.parametrize(
    "sql",
    [
        "DROP VIEW v; CREATE VIEW v AS SELECT 1;",
        "DROP VIEW IF EXISTS v; CREATE OR REPLACE VIEW public.v AS SELECT 1;",
        "DROP MATERIALIZED VIEW app.m; CREATE MATERIALIZED VIEW app.m AS SELECT 1;",
        "DROP VIEW v; CREATE MATERIALIZED VIEW v AS SELECT 1;",
        "DROP FUNCTION f(integer); CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql AS 'SELECT 1';",
        "DROP FUNCTION f; CREATE FUNCTION f(a int, OUT b int) LANGUAGE sql AS 'SELECT 1';",
        "DROP FUNCTION f(int); CREATE FUNCTION f(a int, OUT b int) LANGUAGE sql AS 'SELECT 1';",
        "DROP TYPE mood; CREATE TYPE mood AS ENUM ('happy', 'sad');",
        "DROP TYPE pair; CREATE TYPE pair AS (a int, b int);",
        "DROP DOMAIN positive; CREATE DOMAIN positive AS int CHECK (VALUE > 0);",
        "SET search_path = app; DROP VIEW v; CREATE VIEW app.v AS SELECT 1;",
        "ALTER TYPE mood RENAME TO mood_old; CREATE TYPE mood AS ENUM ('ok'); DROP TYPE mood_old;",
        "DROP VIEW v; CREATE VIEW v_new AS SELECT 1; ALTER VIEW v_new RENAME TO v;",
    ],
)
def test_dropping_a_definition_the_file_creates_again_is_a_replacement(sql: str) -> None:
    assert rules(sql) == []


@pytest.mark.parametrize(
    "sql",
    [
        "DROP VIEW v; CREATE VIEW w AS SELECT 1;",
        "DROP VIEW app.v; CREATE VIEW v AS SELECT 1;",
        "SET search_path = app; DROP VIEW public.v; CREATE VIEW v AS SELECT 1;",
        "CREATE VIEW v AS SELECT 1; DROP VIEW v, w;",
        "DROP FUNCTION f(int); CREATE FUNCTION f(a int, b text) RETURNS int LANGUAGE sql AS 'SELECT 1';",
        "DROP TABLE t; CREATE TABLE t (id int);",
        "DROP SEQUENCE s; CREATE SEQUENCE s;",
        "ALTER TABLE t RENAME TO t_old; CREATE TABLE t (id int); DROP TABLE t_old;",
    ],
)
def test_a_drop_not_made_good_by_the_file_stays_an_error(sql: str) -> None:
    assert ("error", "drop-in-expand") in rules(sql) or ("error", "rename-in-expand") in rules(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE SEQUENCE s; DROP SEQUENCE s;",
        "CREATE SCHEMA staging; DROP SCHEMA staging;",
        "SELECT 1 AS x INTO scratch; DROP TABLE scratch;",
        "CREATE TEMP TABLE scratch (x int); TRUNCATE scratch; DROP TABLE scratch;",
    ],
)
def test_dropping_what_the_file_created_is_fine(sql: str) -> None:
    assert rules(sql) == []


def test_a_cascading_replacement_is_a_warning_about_what_depended_on_it() -> None:
    assert rules("DROP VIEW v CASCADE; CREATE VIEW v AS SELECT 1;") == [("warning", "drop-cascade")]


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER INDEX users_name RENAME TO users_name_idx;",
        "ALTER TABLE users RENAME CONSTRAINT users_fk TO users_org_fk;",
        "ALTER TRIGGER audit ON users RENAME TO users_audit;",
        "ALTER SEQUENCE users_id_seq RENAME TO people_id_seq;",
        "ALTER DOMAIN positive RENAME CONSTRAINT positive_check TO above_zero;",
        "CREATE TYPE mood AS ENUM ('ok'); ALTER TYPE mood RENAME TO feeling;",
    ],
)
def test_renaming_what_no_query_names_is_fine(sql: str) -> None:
    assert rules(sql) == []


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER VIEW active_users RENAME TO active_people;",
        "ALTER MATERIALIZED VIEW stats RENAME TO totals;",
        "ALTER VIEW active_users RENAME COLUMN name TO full_name;",
        "ALTER TYPE mood RENAME TO feeling;",
        "ALTER FUNCTION score(int) RENAME TO rank;",
        "ALTER TABLE users RENAME name TO full_name;",
    ],
)
def test_renaming_what_queries_name_stays_an_error(sql: str) -> None:
    assert rules(sql) == [("error", "rename-in-expand")]


@pytest.mark.parametrize(
    "later",
    [
        "CREATE INDEX ON t (x);",
        "CREATE UNIQUE INDEX t_x ON t (x);",
        "ALTER TABLE t ALTER COLUMN x SET NOT NULL;",
        "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (x) REFERENCES orgs (id);",
        "ALTER TABLE t ADD CONSTRAINT u UNIQUE (x);",
        "ALTER TABLE t ALTER COLUMN x TYPE bigint;",
        "ALTER TABLE t ADD COLUMN y int NOT NULL;",
        "ALTER TABLE t ADD COLUMN token uuid DEFAULT gen_random_uuid();",
        "ALTER TABLE t DROP COLUMN x;",
        "ALTER TABLE t RENAME COLUMN x TO y;",
        "TRUNCATE t;",
        "DROP TABLE t;",
        "ALTER TABLE t RENAME TO u; CREATE INDEX ON u (x);",
    ],
)
@pytest.mark.parametrize(
    "create",
    [
        "CREATE TABLE t (x int);",
        "CREATE TABLE public.t (x int);",
        "CREATE TEMP TABLE t (x int);",
        "CREATE TABLE t AS SELECT 1 AS x;",
        "SET search_path = app; CREATE TABLE app.t (x int);",
    ],
)
def test_a_table_the_file_created_takes_no_traffic(create: str, later: str) -> None:
    assert rules(f"{create}\n{later}") == []


def test_a_name_means_the_same_table_qualified_or_not() -> None:
    assert rules("CREATE TABLE t (x int); CREATE INDEX ON public.t (x);") == []
    assert rules('SET search_path = "$user", app; CREATE TABLE t (x int); CREATE INDEX ON app.t (x);') == []
    assert (
        rules("SET search_path = app; RESET search_path; CREATE TABLE t (x int); CREATE INDEX ON public.t (x);") == []
    )


@pytest.mark.parametrize(
    ("sql", "rule"),
    [
        ("CREATE INDEX ON t (x); CREATE TABLE t2 (x int);", "blocking-index"),
        ("CREATE TABLE audit.t (x int); CREATE INDEX ON t (x);", "blocking-index"),
        ("CREATE TABLE t (x int); CREATE INDEX ON audit.t (x);", "blocking-index"),
        ("CREATE TABLE app.t (x int); CREATE INDEX ON public.t (x);", "blocking-index"),
        ("CREATE TEMP TABLE t (x int); CREATE INDEX ON public.t (x);", "blocking-index"),
        ("SET search_path = app; CREATE TABLE public.t (x int); CREATE INDEX ON t (x);", "blocking-index"),
        ("CREATE TABLE t (x int); ALTER TABLE users ALTER COLUMN x SET NOT NULL;", "set-not-null"),
        ("ALTER TABLE users RENAME TO people; CREATE INDEX ON people (x);", "blocking-index"),
        ("CREATE VIEW t AS SELECT 1; ALTER TABLE users DROP COLUMN x;", "drop-in-expand"),
    ],
)
def test_tables_the_file_did_not_create_keep_their_findings(sql: str, rule: str) -> None:
    assert rule in {r for _, r in rules(sql)}


def lint_files(files: dict[str, str]) -> list[tuple[str, str]]:
    scripts = [Script(*parse_name(name), name, sql, checksum(sql)) for name, sql in files.items()]
    return [(f.script, f.rule) for f in lint_scripts(scripts)]


@pytest.mark.parametrize(
    "change",
    [
        "ALTER TABLE users ALTER COLUMN name TYPE varchar(200);",
        "ALTER TABLE users ALTER COLUMN name TYPE varchar(100);",
        "ALTER TABLE users ALTER COLUMN name TYPE character varying;",
        "ALTER TABLE public.users ALTER COLUMN name TYPE text;",
        "ALTER TABLE users ALTER COLUMN note TYPE varchar;",
    ],
)
def test_widening_varchar_is_no_rewrite(change: str) -> None:
    created = (
        "CREATE TABLE people (id bigint, note text); ALTER TABLE people RENAME TO users;"
        " ALTER TABLE users ADD COLUMN title varchar(100); ALTER TABLE users RENAME COLUMN title TO name;"
    )
    assert lint_files({"V1__users.sql": created, "V2__widen.sql": change}) == []


@pytest.mark.parametrize(
    "change",
    [
        "ALTER TABLE users ALTER COLUMN name TYPE varchar(50);",
        "ALTER TABLE users ALTER COLUMN note TYPE varchar(50);",
        "ALTER TABLE users ALTER COLUMN name TYPE text USING upper(name);",
        "ALTER TABLE users ALTER COLUMN name TYPE varchar(200)[];",
        'ALTER TABLE users ALTER COLUMN name TYPE text COLLATE "C";',
        "ALTER TABLE users ALTER COLUMN id TYPE text;",
        "ALTER TABLE users ALTER COLUMN email TYPE text;",
        "ALTER TABLE audit.users ALTER COLUMN name TYPE text;",
        "ALTER TABLE users RENAME TO people; ALTER TABLE users ALTER COLUMN name TYPE text;",
    ],
)
def test_narrowing_or_other_type_changes_still_rewrite(change: str) -> None:
    created = "CREATE TABLE users (id bigint, note text); ALTER TABLE users ADD COLUMN name varchar(100);"
    assert ("V2__change.sql", "column-type-change") in lint_files({"V1__users.sql": created, "V2__change.sql": change})


def test_column_types_follow_the_run_order_not_the_file_names() -> None:
    files = {
        "V1__users.sql": "CREATE TABLE users (name varchar(10));",
        "V10__widen.sql": "ALTER TABLE users ALTER COLUMN name TYPE varchar(20);",
        "U10__narrow.sql": "ALTER TABLE users ALTER COLUMN name TYPE varchar(10);",
        "U9__narrow_less.sql": "ALTER TABLE users ALTER COLUMN name TYPE varchar(15);",
    }
    assert lint_files(files) == [
        ("U10__narrow.sql", "column-type-change"),
        ("U9__narrow_less.sql", "column-type-change"),
    ]


def test_a_table_made_again_forgets_the_old_column_types() -> None:
    files = {
        "V1__users.sql": "CREATE TABLE users (name varchar(10));",
        "V2__again.sql": "DROP TABLE users; CREATE TABLE users AS SELECT 'x'::text AS name;",
        "V3__widen.sql": "ALTER TABLE users ALTER COLUMN name TYPE varchar(20);",
    }
    assert ("V3__widen.sql", "column-type-change") in lint_files(files)


def test_a_type_change_lint_cannot_see_the_old_type_of_is_still_reported() -> None:
    assert rules("ALTER TABLE users ALTER COLUMN name TYPE text;") == [("warning", "column-type-change")]

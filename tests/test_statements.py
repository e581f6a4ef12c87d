"""Statement splitting with PostgreSQL's own parser, and SQLite's tokenizer (pure)."""

from __future__ import annotations

import pytest

from lockgate.runner.statements import ScriptSyntaxError, TransactionControlInScript, split_postgres, split_sqlite

TRICKY = """-- a comment; with a semicolon
CREATE TABLE t (id int, body text DEFAULT 'a;b', pct text DEFAULT '100%');
/* block comment ; /* nested ; */ still comment */
CREATE FUNCTION f() RETURNS int AS $body$
BEGIN
  RAISE NOTICE 'in ; body';
  RETURN 1;
END;
$body$ LANGUAGE plpgsql;
INSERT INTO t VALUES (1, E'it''s \\n ; here', 'é;ü');
DO $$ BEGIN PERFORM 1; END $$;
CREATE INDEX CONCURRENTLY IF NOT EXISTS t_id ON t (id);
VACUUM t;
ANALYZE t
"""


def test_tricky_script_splits_where_the_server_would() -> None:
    statements = split_postgres(TRICKY)
    assert [s.sql.split(None, 1)[0].upper() for s in statements] == [
        "CREATE",
        "CREATE",
        "INSERT",
        "DO",
        "CREATE",
        "VACUUM",
        "ANALYZE",
    ]
    assert statements[1].sql.endswith("LANGUAGE plpgsql")
    assert "'in ; body'" in statements[1].sql
    assert statements[2].sql.endswith("'é;ü')")
    assert [s.line for s in statements] == [2, 4, 10, 11, 12, 13, 14]


def test_statements_that_refuse_a_transaction_block_are_detected() -> None:
    sql = """CREATE INDEX CONCURRENTLY a ON t (x);
CREATE INDEX b ON t (x);
DROP INDEX CONCURRENTLY a;
REINDEX INDEX CONCURRENTLY b;
REINDEX INDEX b;
VACUUM t;
ANALYZE t;
ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY;
ALTER TABLE p DETACH PARTITION p2;
ALTER SYSTEM SET work_mem = '8MB';
CREATE DATABASE other;
ALTER TYPE mood ADD VALUE 'meh';
"""
    assert [s.transactional for s in split_postgres(sql)] == [
        False,
        True,
        False,
        False,
        True,
        False,
        True,
        False,
        True,
        False,
        False,
        True,
    ]


def test_syntax_error_reports_the_line() -> None:
    with pytest.raises(ScriptSyntaxError) as error:
        split_postgres("SELECT 'é';\nCREATE TABLE x (\n  id int,,\n)")
    assert error.value.line == 3
    assert "syntax error" in error.value.message


@pytest.mark.parametrize("control", ["BEGIN", "COMMIT", "START TRANSACTION", "ROLLBACK"])
def test_transaction_control_is_refused(control: str) -> None:
    with pytest.raises(TransactionControlInScript, match="line 2"):
        split_postgres(f"SELECT 1;\n{control};")


def test_sqlite_split_respects_strings_comments_and_triggers() -> None:
    sql = "-- c;\nCREATE TABLE a (x text DEFAULT 'a;b'); /* ; */ INSERT INTO a VALUES ('x;');\nCREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; END;\nVACUUM;\n-- trailing comment"
    statements = split_sqlite(sql)
    assert [s.sql for s in statements] == [
        "CREATE TABLE a (x text DEFAULT 'a;b');",
        "INSERT INTO a VALUES ('x;');",
        "CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; END;",
        "VACUUM;",
    ]
    assert [s.line for s in statements] == [2, 2, 3, 4]
    assert [s.transactional for s in statements] == [True, True, True, False]


def test_sqlite_incomplete_statement_is_a_syntax_error() -> None:
    with pytest.raises(ScriptSyntaxError, match="incomplete"):
        split_sqlite("SELECT 1;\nSELECT 'unterminated")

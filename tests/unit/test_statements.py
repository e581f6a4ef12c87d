"""Statement splitting with PostgreSQL's own parser, and SQLite's tokenizer (pure)."""

from __future__ import annotations

import pytest

from lockgate.runner.statements import (
    PsqlMetaCommand,
    ScriptSyntaxError,
    TransactionControlInScript,
    split_postgres,
    split_sqlite,
)

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
CREATE TABLE d (database text, system text DEFAULT 'concurrently');
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


def test_line_numbers_stay_right_over_many_statements() -> None:
    sql = "".join(f"INSERT INTO t VALUES ({i},\n'{i}');\n" for i in range(5000))
    statements = split_postgres(sql)
    assert len(statements) == 5000
    assert [s.line for s in statements[::1000]] == [1, 2001, 4001, 6001, 8001]
    assert all(s.transactional for s in statements)


@pytest.mark.parametrize(
    ("opening", "closing"),
    [("BEGIN", "COMMIT"), ("begin transaction", "end"), ("START TRANSACTION", "COMMIT WORK"), ("BEGIN WORK", "END")],
)
def test_one_wrapper_around_the_whole_file_is_dropped(opening: str, closing: str) -> None:
    sql = f"-- header\n{opening};\nCREATE TABLE a (id int);\nINSERT INTO a VALUES (1);\n{closing};\n-- trailer\n"
    statements = split_postgres(sql)
    assert [s.sql for s in statements] == ["CREATE TABLE a (id int)", "INSERT INTO a VALUES (1)"]
    assert [s.line for s in statements] == [3, 4]


@pytest.mark.parametrize(
    ("sql", "line", "words"),
    [
        ("BEGIN;\nSELECT 1;\nROLLBACK;", 3, "ROLLBACK: lockgate runs each migration in its own transaction"),
        ("BEGIN;\nSAVEPOINT s;\nSELECT 1;\nCOMMIT;", 2, "SAVEPOINT s: "),
        ("BEGIN;\nSELECT 1;\nBEGIN;\nSELECT 2;\nCOMMIT;", 3, "BEGIN: "),
        ("BEGIN;\nSELECT 1;\nCOMMIT;\nBEGIN;\nSELECT 2;\nCOMMIT;", 3, "COMMIT: "),
        ("BEGIN;\nSELECT 1;", 1, "BEGIN has no COMMIT; at the end of the file"),
        ("SELECT 1;\nBEGIN;\nSELECT 2;\nCOMMIT;", 2, "BEGIN: "),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE;\nSELECT 1;\nCOMMIT;", 1, "a plain BEGIN;"),
        ("BEGIN;\nSELECT 1;\nCOMMIT AND CHAIN;", 3, "COMMIT AND CHAIN: "),
        ("PREPARE TRANSACTION 'x';", 1, "PREPARE TRANSACTION 'x': "),
    ],
)
def test_transaction_control_other_than_one_wrapper_is_refused(sql: str, line: int, words: str) -> None:
    with pytest.raises(TransactionControlInScript) as refused:
        split_postgres(sql)
    assert refused.value.line == line
    assert str(refused.value).startswith(f"line {line}: ") and words in str(refused.value)


def test_a_wrapped_file_cannot_hold_a_statement_that_refuses_a_transaction() -> None:
    sql = "BEGIN;\nCREATE TABLE a (id int);\nCREATE INDEX CONCURRENTLY a_id ON a (id);\nCOMMIT;\n"
    with pytest.raises(TransactionControlInScript) as refused:
        split_postgres(sql)
    assert refused.value.line == 3
    assert "CREATE INDEX CONCURRENTLY a_id cannot run inside a transaction" in str(refused.value)
    assert "BEGIN (line 1) ... COMMIT (line 4): remove the BEGIN and COMMIT" in str(refused.value)


DUMP = """--
-- PostgreSQL database dump
--

\\restrict Abc123

SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);
CREATE TABLE public.t (id integer, note text);
COPY public.t (id, note) FROM stdin;
1\tit's; -- not SQL
2\t\\N
3\tback\\\\slash \\\\.
\\.
COPY public.empty (x) FROM stdin;
\\.
SELECT pg_catalog.setval('public.t_id_seq', 3, true);

\\unrestrict Abc123
"""


def test_copy_rows_are_cut_out_and_kept_with_their_statement() -> None:
    statements = split_postgres(DUMP)
    assert [(s.line, s.sql.split(None, 2)[:2]) for s in statements] == [
        (7, ["SET", "statement_timeout"]),
        (8, ["SELECT", "pg_catalog.set_config('search_path',"]),
        (9, ["CREATE", "TABLE"]),
        (10, ["COPY", "public.t"]),
        (15, ["COPY", "public.empty"]),
        (17, ["SELECT", "pg_catalog.setval('public.t_id_seq',"]),
    ]
    assert statements[3].copy_data == "1\tit's; -- not SQL\n2\t\\N\n3\tback\\\\slash \\\\.\n"
    assert statements[4].copy_data == ""
    assert [s.copy_data for s in statements if not s.sql.startswith("COPY")] == [None] * 4


@pytest.mark.parametrize(
    ("sql", "line"),
    [
        ("CREATE TABLE t (x int);\nCOPY t FROM stdin;\n1\n2\n", 2),
        ("CREATE TABLE t (x int);\nCOPY t (x) FROM STDIN", 2),
        ("COPY t FROM stdin; SELECT 1;\n1\n\\.\n", 1),
    ],
)
def test_copy_from_stdin_without_its_rows_is_a_syntax_error(sql: str, line: int) -> None:
    with pytest.raises(ScriptSyntaxError, match=r"needs its rows on the lines after it") as error:
        split_postgres(sql)
    assert error.value.line == line


@pytest.mark.parametrize(
    ("sql", "line", "command"),
    [
        ("SELECT 1;\n\\connect other\nSELECT 2;", 2, "\\connect"),
        ("\\set ON_ERROR_STOP on\nSELECT 1;", 1, "\\set"),
        ("SELECT 1;\n  \\i more.sql\n", 2, "\\i"),
        ("SELECT 'a'\n\\gset\n", 2, "\\gset"),
        ("SELECT E'\\n';\n/* \\x */ SELECT $$\\q$$;\n\\echo done", 3, "\\echo"),
        ("COPY t FROM stdin;\n\\x\n\\.\n\\c db", 4, "\\c"),
    ],
)
def test_psql_meta_commands_are_refused_naming_the_line(sql: str, line: int, command: str) -> None:
    with pytest.raises(PsqlMetaCommand) as refused:
        split_postgres(sql)
    assert refused.value.line == line
    assert str(refused.value).startswith(f"line {line}: {command} is a psql meta-command, which only psql understands")


def test_backslashes_inside_strings_quotes_and_comments_are_sql() -> None:
    sql = (
        "SELECT E'a\\'b;\\\\', 'c:\\\\dir\\', \"we\\ird\";\n-- \\connect x\n/* /* \\i y */ */"
        " SELECT $q$\n\\set x\n$q$, a$b$c FROM t;\nSELECT 1"
    )
    assert [s.line for s in split_postgres(sql)] == [1, 3, 6]


def test_sqlite_wrapper_is_dropped_and_other_control_refused() -> None:
    statements = split_sqlite("BEGIN TRANSACTION;\nCREATE TABLE a (x);\nCOMMIT;\n")
    assert [s.sql for s in statements] == ["CREATE TABLE a (x);"]
    with pytest.raises(TransactionControlInScript, match="line 2: SAVEPOINT s"):
        split_sqlite("BEGIN;\nSAVEPOINT s;\nCOMMIT;")

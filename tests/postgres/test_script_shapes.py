"""Real-world file shapes against a real PostgreSQL, through the real CLI: a BEGIN ... COMMIT
wrapper, a byte order mark, other encodings, pg_dump output with COPY data, psql meta-commands,
server notices, and a failure found among thousands of pipelined statements."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import psycopg

from devcluster.postgres import ExternalPostgres, PostgresServer, find_pg_bin
from tests.runner_support import history, lockgate, query, write


def test_a_file_wrapped_in_begin_commit_is_one_migration(tmp_path: Path, database_url: str) -> None:
    d = write(
        tmp_path / "m",
        {
            "V1__wrapped.sql": "BEGIN;\nCREATE TABLE a (id int PRIMARY KEY);\nINSERT INTO a VALUES (1);\nCOMMIT;\n",
            "V2__wrapped_fails.sql": "START TRANSACTION;\nINSERT INTO a VALUES (2);\nINSERT INTO a VALUES (1);\nEND;\n",
        },
    )
    result = lockgate("migrate", "--dir", str(d), "--json", url=database_url)
    assert result.code == 1
    assert (result.json["error"]["script"], result.json["error"]["line"]) == ("V2__wrapped_fails.sql", 3)
    assert query(database_url, "SELECT id FROM a") == [(1,)]  # V2 rolled back whole
    assert history(database_url) == [("1", "expand", "V1__wrapped.sql", True)]


def test_transaction_control_inside_a_file_is_refused_before_anything_runs(tmp_path: Path, database_url: str) -> None:
    d = write(
        tmp_path / "m",
        {
            "V1__a.sql": "CREATE TABLE a (id int);",
            "V2__rollback.sql": "BEGIN;\nINSERT INTO a VALUES (1);\nROLLBACK;\n",
            "V3__concurrently.sql": "BEGIN;\nCREATE INDEX CONCURRENTLY a_id ON a (id);\nCOMMIT;\n",
        },
    )
    result = lockgate("migrate", "--dir", str(d), url=database_url)
    assert result.code == 4
    assert "V2__rollback.sql line 3: ROLLBACK: lockgate runs each migration in its own transaction" in result.err
    assert "V3__concurrently.sql line 2: CREATE INDEX CONCURRENTLY a_id cannot run inside a transaction" in result.err
    assert history(database_url) == []


def test_bom_and_encoding(tmp_path: Path, database_url: str) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "V1__bom.sql").write_bytes("\ufeffCREATE TABLE cafe (name text);\n".encode())
    (d / "V2__latin.sql").write_bytes("INSERT INTO cafe VALUES ('crème brûlée');\n".encode("latin-1"))
    refused = lockgate("migrate", "--dir", str(d), url=database_url)
    assert refused.code == 4
    assert "V2__latin.sql line 1: byte 0xe8 is not valid utf-8; re-save the file as UTF-8" in refused.err
    assert query(database_url, "SELECT to_regclass('cafe')") == [(None,)]
    assert lockgate("migrate", "--dir", str(d), url=database_url, LOCKGATE_ENCODING="latin-1").code == 0
    assert query(database_url, "SELECT name FROM cafe") == [("crème brûlée",)]
    # The same file re-saved as UTF-8 is not an edit.
    (d / "V2__latin.sql").write_text("INSERT INTO cafe VALUES ('crème brûlée');\n")
    assert lockgate("migrate", "--dir", str(d), url=database_url).code == 0
    bad = lockgate("migrate", "--dir", str(d), "--encoding", "klingon", url=database_url)
    assert bad.code == 2 and "unknown encoding 'klingon'" in bad.err


SOURCE_SCHEMA = r"""
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, note text, created date DEFAULT '2026-01-01');
CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer_id int REFERENCES customers,
                     amount numeric(10,2), tags text[], doc jsonb);
CREATE INDEX orders_customer ON orders (customer_id);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 100;
CREATE FUNCTION total(c int) RETURNS numeric LANGUAGE sql AS $$ SELECT sum(amount) FROM orders WHERE customer_id = c $$;
CREATE TABLE empty_one (x int);
INSERT INTO customers (name, note) VALUES ('Zoë', E'tab\there'), ('O''Brien', E'back\\slash'), ('nul', NULL),
  (E'new\nline', E'multi\nline\r\nnote'), ('dot', '\.'), ('semi;colon', '-- not a comment');
INSERT INTO orders (customer_id, amount, tags, doc)
  VALUES (1, 150.5, '{a,b}', '{"k": "v\\n"}'), (2, 20, NULL, '[]'), (4, 999.99, '{"x y"}', '{"a": [1,2]}');
"""


def _pg_dump(url: str, *args: str) -> str:
    pg_dump = str(find_pg_bin() / "pg_dump")
    # pg_dump >= 17.6/16.10/15.14 writes \restrict with a random key unless given one.
    helps = subprocess.run([pg_dump, "--help"], capture_output=True, text=True, check=True).stdout
    fixed_key = ["--restrict-key=lockgate"] if "--restrict-key" in helps else []
    return subprocess.run([pg_dump, *fixed_key, *args, url], capture_output=True, text=True, check=True).stdout


def test_pg_dump_output_applies_to_the_same_schema_and_data(
    tmp_path: Path, postgres: PostgresServer | ExternalPostgres
) -> None:
    source = postgres.create_database(f"src_{uuid.uuid4().hex[:8]}")
    target = postgres.create_database(f"dst_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute(SOURCE_SCHEMA.encode())
    dump = _pg_dump(source)
    assert "\nCOPY public.customers (id, name, note, created) FROM stdin;\n" in dump
    assert "SELECT pg_catalog.set_config('search_path', '', false);" in dump
    d = write(tmp_path / "m", {"V1__baseline.sql": dump})
    # pg_dump empties search_path for the session; the history table is named with its schema.
    result = lockgate("migrate", "--dir", str(d), "--history-table", "public.lockgate_schema_history", url=target)
    assert result.code == 0, result.err
    history_tables = ("--exclude-table=lockgate_schema_history*",)
    assert _pg_dump(target, *history_tables) == _pg_dump(source)
    assert query(target, "SELECT name, note FROM public.customers WHERE id IN (2, 4) ORDER BY id") == [
        ("O'Brien", "back\\slash"),
        ("new\nline", "multi\nline\r\nnote"),
    ]


def test_a_bad_copy_row_fails_the_migration_naming_the_row(tmp_path: Path, database_url: str) -> None:
    d = write(
        tmp_path / "m",
        {"V1__copy.sql": "CREATE TABLE n (id int, label text);\nCOPY n FROM stdin;\n1\tone\ntwo\t2\n\\.\n"},
    )
    result = lockgate("migrate", "--dir", str(d), "--json", url=database_url)
    assert result.code == 1
    error = result.json["error"]
    assert (error["sqlstate"], error["line"]) == ("22P02", 2)
    assert "COPY n, line 2, column id" in error["message"]
    assert history(database_url) == []


def test_copy_rows_with_crlf_line_endings(tmp_path: Path, database_url: str) -> None:
    d = tmp_path / "m"
    d.mkdir()
    sql = "CREATE TABLE c (id int, label text);\nCOPY c FROM stdin;\n1\tone\n2\t\\N\n\\.\nSELECT 1;\n"
    (d / "V1__crlf.sql").write_bytes(sql.replace("\n", "\r\n").encode())
    result = lockgate("migrate", "--dir", str(d), url=database_url)
    assert result.code == 0, result.err
    assert query(database_url, "SELECT id, label FROM c ORDER BY id") == [(1, "one"), (2, None)]


def test_psql_meta_commands_are_refused_before_anything_runs(tmp_path: Path, database_url: str) -> None:
    d = write(
        tmp_path / "m",
        {"V1__a.sql": "CREATE TABLE a (id int);", "V2__psql.sql": "SELECT 1;\n\\connect other\nSELECT 2;\n"},
    )
    result = lockgate("migrate", "--dir", str(d), url=database_url)
    assert result.code == 4
    assert "V2__psql.sql line 2: \\connect is a psql meta-command, which only psql understands" in result.err
    assert history(database_url) == [] and query(database_url, "SELECT to_regclass('a')") == [(None,)]
    lint = lockgate("lint", "--dir", str(d), "--json")
    assert [(f["script"], f["line"], f["rule"]) for f in lint.json["findings"]] == [
        ("V2__psql.sql", 2, "psql-meta-command")
    ]


NOTICES = """CREATE TABLE t (id int);
CREATE TABLE IF NOT EXISTS t (id int);
DO $$ BEGIN RAISE NOTICE 'copied % rows', 42; END $$;
"""


def test_server_notices_are_shown_as_progress_never_in_the_json(tmp_path: Path, database_url: str) -> None:
    d = write(tmp_path / "m", {"V1__notices.sql": NOTICES})
    result = lockgate("migrate", "--dir", str(d), "--json", url=database_url)
    assert result.code == 0, result.err
    assert result.json["applied"][0]["script"] == "V1__notices.sql"  # stdout is only the document
    assert 'NOTICE: relation "t" already exists, skipping' in result.err
    assert "NOTICE: copied 42 rows" in result.err


def test_a_failure_among_thousands_of_pipelined_statements_names_its_line(tmp_path: Path, database_url: str) -> None:
    inserts = [f"INSERT INTO p VALUES ({i});" for i in range(2500)]
    inserts[1700] = "INSERT INTO p VALUES (5);"  # a duplicate key, reported by the server without a position
    d = write(tmp_path / "m", {"V1__many.sql": "\n".join(["CREATE TABLE p (id int PRIMARY KEY);", *inserts])})
    result = lockgate("migrate", "--dir", str(d), "--json", url=database_url)
    assert result.code == 1
    assert (result.json["error"]["sqlstate"], result.json["error"]["line"]) == ("23505", 1702)
    assert query(database_url, "SELECT to_regclass('p')") == [(None,)]
    inserts[1700] = "INSERT INTO p VALUES (1700);"
    write(d, {"V1__many.sql": "\n".join(["CREATE TABLE p (id int PRIMARY KEY);", *inserts])})
    assert lockgate("migrate", "--dir", str(d), url=database_url).code == 0
    assert query(database_url, "SELECT count(*), max(id) FROM p") == [(2500, 2499)]

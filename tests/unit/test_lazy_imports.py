"""`lockgate --version`, `exec` and `wait` load only the libraries they use (tests/imports_support.py)."""

from __future__ import annotations

from pathlib import Path

from tests.imports_support import loaded, probe

UNREACHABLE = "postgresql://app:secret@127.0.0.1:1/app"  # nothing listens on port 1: connecting fails at once


def test_version_loads_nothing_but_lockgate_and_the_standard_library(tmp_path: Path) -> None:
    assert probe(tmp_path, "--version") == (0, set(), {"lockgate"})


def test_exec_on_postgresql_loads_psycopg_only(tmp_path: Path) -> None:
    """exec holds the lock and writes the audit row through psycopg: no ORM, no SQL parser.
    (tests/postgres/test_exec.py runs the same path against a real server.)"""
    assert loaded(tmp_path, "exec", "--database-url", UNREACHABLE, "--", "true") == (2, {"psycopg"})  # 2: no server


def test_exec_on_sqlite_loads_no_database_library_beyond_the_standard_library(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/app.db"
    assert probe(tmp_path, "exec", "--database-url", url, "--", "true") == (0, set(), {"lockgate"})


def test_wait_loads_the_kubernetes_client_only(tmp_path: Path) -> None:
    code, modules = loaded(
        tmp_path,
        *("wait", "--namespace", "shop", "--name", "shop", "--version", "2"),
        env={"KUBECONFIG": str(tmp_path / "missing")},  # no credentials: it stops before any request
    )
    assert (code, modules) == (2, {"kubernetes"})


def test_migrate_still_loads_what_it_needs(tmp_path: Path) -> None:
    """The probe sees imports at all: a command that parses SQL has the parser loaded; none loads SQLAlchemy."""
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "V1__t.sql").write_text("CREATE TABLE t (id int);")
    url = f"sqlite:///{tmp_path}/app.db"
    code, modules = loaded(tmp_path, "migrate", "--database-url", url, "--dir", str(tmp_path / "migrations"))
    assert code == 0 and "pglast" in modules and "sqlalchemy" not in modules


def test_a_no_op_migrate_loads_no_sql_parser(tmp_path: Path) -> None:
    """Most runs of migrate (every pod start, every Job retry) find nothing pending: nothing to parse."""
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "V1__t.sql").write_text("CREATE TABLE t (id int);")
    migrate = ("migrate", "--database-url", f"sqlite:///{tmp_path}/app.db", "--dir", str(tmp_path / "migrations"))
    code, applying = loaded(tmp_path, *migrate)  # applies V1: parses it
    assert code == 0 and "pglast" in applying
    assert probe(tmp_path, *migrate) == (0, set(), {"lockgate"})

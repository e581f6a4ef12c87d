"""runner/connection.py: database URLs, and the history table lockgate's SQLAlchemy days created."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lockgate.runner.connection import Target, parse_url
from lockgate.shared import redaction
from lockgate.shared.errors import UsageError
from tests.runner_support import lockgate, write

# CREATE TABLE as SQLAlchemy emitted it for SQLite (lockgate 0.1.0 and before): tables in use keep it.
SQLALCHEMY_SQLITE_HISTORY = """
CREATE TABLE lockgate_schema_history (
    installed_rank INTEGER NOT NULL, version TEXT, phase TEXT NOT NULL, description TEXT NOT NULL,
    script TEXT NOT NULL, checksum TEXT, installed_by TEXT NOT NULL,
    installed_on DATETIME DEFAULT CURRENT_TIMESTAMP NOT NULL, execution_ms INTEGER NOT NULL,
    success BOOLEAN NOT NULL, PRIMARY KEY (installed_rank)
)"""


def test_a_postgresql_url_goes_to_libpq_as_it_is_and_its_password_is_redacted() -> None:
    target = parse_url("postgres://app:p%40ss%3Aw0rd@db.internal:6432/shop%20db?sslmode=require")
    assert target == Target(
        "postgresql",
        "postgresql://app:p%40ss%3Aw0rd@db.internal:6432/shop%20db?sslmode=require",
        "db.internal",
        6432,
        "shop db",
    )
    assert target.describe() == "db.internal:6432/shop db"
    assert "p@ss:w0rd" not in redaction.redact("failed for app with p@ss:w0rd")
    assert parse_url("postgresql+psycopg://h/d").conninfo == "postgresql://h/d"
    assert parse_url("postgresql:///d").describe() == "localhost:5432/d"  # a Unix socket, as libpq picks


def test_sqlite_urls_name_a_relative_or_absolute_file_or_memory() -> None:
    assert parse_url("sqlite:///local.db") == Target("sqlite", "local.db", database="local.db")
    assert parse_url("sqlite:////var/lib/app.db") == Target("sqlite", "/var/lib/app.db", database="/var/lib/app.db")
    assert parse_url("sqlite://") == Target("sqlite", ":memory:")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:secretpw@h/d", "unsupported database 'mysql'"),
        ("db.internal:5432/app", "does not parse"),
        ("postgresql://u:secretpw@h:port/d", "does not parse"),
    ],
)
def test_bad_urls_are_refused_without_showing_them(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as refused:
        parse_url(url)
    assert "secretpw" not in str(refused.value)


def test_a_history_table_sqlalchemy_created_is_read_and_written_as_before(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "app.db") as conn:
        conn.execute(SQLALCHEMY_SQLITE_HISTORY)
    url = f"sqlite:///{tmp_path / 'app.db'}"
    d = write(tmp_path / "m", {"V1__users.sql": "CREATE TABLE users (id integer PRIMARY KEY);"})
    assert lockgate("migrate", "--dir", str(d), url=url).code == 0
    assert lockgate("exec", "--version-label", "1", "--", "true", url=url).code == 0
    assert lockgate("migrate", "--dir", str(d), "--json", url=url).json["applied"] == []
    applied = lockgate("info", "--dir", str(d), "--json", url=url).json["expand"][0]
    assert applied["state"] == "applied" and applied["installed_on"].startswith("20")
    with sqlite3.connect(tmp_path / "app.db") as conn:
        rows = conn.execute("SELECT version, phase, script, success FROM lockgate_schema_history").fetchall()
    assert rows == [("1", "expand", "V1__users.sql", 1), (None, "exec", "true", 1)]

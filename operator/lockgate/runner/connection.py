"""Connections to PostgreSQL (psycopg 3) and SQLite (sqlite3), straight to the driver.

No ORM in between: SQLAlchemy took a third of a second to import, paid by every `lockgate exec`
and `migrate` in every pod's start-up (benchmarks/startup.py). psycopg, a tenth of a second
itself, loads only where PostgreSQL is reached (here and in database.py's PostgreSQL-only paths).
Every connection is autocommit; transactions are begun and ended explicitly.
Statements with parameters use psycopg's `%(name)s`, turned into SQLite's `:name` for SQLite.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ..shared import redaction
from ..shared.errors import UsageError

if TYPE_CHECKING:
    import psycopg

_SCHEMES = {
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "postgresql+psycopg": "postgresql",
    "sqlite": "sqlite",
}
_PARAMETER = re.compile(r"%\((\w+)\)s")


class DatabaseError(Exception):
    """A driver's error (psycopg's or sqlite3's), kept as `orig`: one kind to catch for both."""

    def __init__(self, orig: Exception) -> None:
        super().__init__(str(orig))
        self.orig = orig


@dataclass(frozen=True)
class Target:
    """What a database URL names; `conninfo` is what the driver connects with (it holds the password)."""

    dialect: str  # "postgresql" or "sqlite"
    conninfo: str
    host: str | None = None
    port: int | None = None
    database: str | None = None

    def describe(self) -> str:
        """host:port/database, for messages; never the user or password."""
        if self.dialect == "sqlite":
            return f"sqlite {self.database or ':memory:'}"
        return f"{self.host or 'localhost'}:{self.port or 5432}/{self.database or ''}"


def parse_url(url: str) -> Target:
    """A postgresql:// or sqlite:/// URL; the URL and its password never appear in an error."""
    redaction.register(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or "://" not in url:
        raise UsageError(
            "the database URL does not parse: expected postgresql://user:password@host:port/dbname or sqlite:///path"
        )
    redaction.register(unquote(parts.password) if parts.password else None)
    dialect = _SCHEMES.get(parts.scheme.lower())
    if dialect is None:
        raise UsageError(f"unsupported database {parts.scheme!r}: use a postgresql:// or sqlite:/// URL")
    if dialect == "sqlite":
        path = parts.path[1:] if parts.path.startswith("/") else parts.path  # sqlite:////abs, sqlite:///rel
        return Target("sqlite", path or ":memory:", database=path or None)
    conninfo = "postgresql" + url[len(parts.scheme) :]  # libpq reads the URL itself, query options too
    return Target("postgresql", conninfo, parts.hostname, port, unquote(parts.path[1:]) or None)


def connect(target: Target) -> Connection:
    """An autocommit connection; a failure to connect is a UsageError naming where, never who."""
    if target.dialect == "sqlite":
        return _opened(
            target, sqlite3.Error, lambda: sqlite3.connect(target.conninfo, timeout=30, isolation_level=None)
        )
    import psycopg

    # No automatic prepared statements: a statement repeated five times (a lock poll, a batch)
    # would be prepared on one server session and executed on another behind a pooler.
    return _opened(
        target,
        psycopg.Error,
        lambda: psycopg.connect(
            target.conninfo, autocommit=True, application_name="lockgate", connect_timeout=10, prepare_threshold=None
        ),
    )


def _opened(target: Target, errors: type[Exception], open_driver: Callable[[], Any]) -> Connection:
    try:
        return Connection(open_driver(), errors)
    except errors as exc:
        raise UsageError(f"cannot connect to the database at {target.describe()}: {first_line(exc)}") from None


class Connection:
    """One driver connection; its errors come out as DatabaseError."""

    def __init__(self, driver: Any, errors: type[Exception]) -> None:
        self._driver = driver
        self._errors = errors
        self.is_postgres = not isinstance(driver, sqlite3.Connection)

    @property
    def driver(self) -> psycopg.Connection[Any]:
        """The psycopg connection itself (PostgreSQL only): pipelines, COPY, notices, its socket."""
        assert self.is_postgres
        driver: psycopg.Connection[Any] = self._driver
        return driver

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        """Run one statement; its cursor (rows, rowcount). Without params the SQL is sent as it is."""
        try:
            if params is None:
                return self._driver.execute(sql)
            return self._driver.execute(sql if self.is_postgres else _PARAMETER.sub(r":\1", sql), params)
        except self._errors as exc:
            raise DatabaseError(exc) from None

    def scalar(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        """The first column of the first row, None without one."""
        row = self.first(sql, params)
        return row[0] if row else None

    def first(self, sql: str, params: dict[str, Any] | None = None) -> tuple[Any, ...] | None:
        try:
            row: tuple[Any, ...] | None = self.execute(sql, params).fetchone()
        except self._errors as exc:
            raise DatabaseError(exc) from None
        return row

    def one(self, sql: str, params: dict[str, Any] | None = None) -> tuple[Any, ...]:
        row = self.first(sql, params)
        if row is None:
            raise DatabaseError(LookupError(f"no row from: {sql[:200]}"))
        return row

    def mappings(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """All rows, each a dict by column name."""
        try:
            cursor = self.execute(sql, params)
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        except self._errors as exc:
            raise DatabaseError(exc) from None

    def close(self) -> None:
        self._driver.close()


def quoted(*names: str | None) -> str:
    """An identifier, schema-qualified when a schema is given, quoted as both dialects read it."""
    return ".".join('"' + name.replace('"', '""') + '"' for name in names if name)


def first_line(exc: object) -> str:
    """An error's first line, redacted: a Job log or a --json reader needs the cause, not a traceback."""
    return redaction.redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)

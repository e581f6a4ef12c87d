"""The database shell of the runner: session state, statements, transactions, the history table.

PostgreSQL (psycopg 3) is first-class; SQLite serves local trials with the same semantics
where SQLite allows. Both are reached through connection.Connection, with transactions
controlled explicitly so that each migration and its history row commit together.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..shared.errors import LockgateError, UsageError
from ..shared.phases import CREATE_TABLES, EXEC
from ..shared.versions import Version
from .connection import Connection, DatabaseError, Target, connect, first_line, quoted
from .history import HistoryRow

if TYPE_CHECKING:
    import psycopg

    from .statements import Statement

PIPELINE_DEPTH = 1000  # statements sent before waiting for their replies
_TABLE_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$")
# The history table's columns, as SQLAlchemy created them for the tables that exist already.
_COLUMNS = (
    "installed_rank {rank}, version TEXT, phase TEXT NOT NULL, description TEXT NOT NULL, script TEXT NOT NULL, "
    "checksum TEXT, installed_by TEXT NOT NULL, installed_on {timestamp} NOT NULL, execution_ms INTEGER NOT NULL, "
    "success BOOLEAN NOT NULL, PRIMARY KEY (installed_rank)"
)
_POSTGRES_TYPES = {"rank": "SERIAL NOT NULL", "timestamp": "TIMESTAMP WITH TIME ZONE DEFAULT now()"}
_SQLITE_TYPES = {"rank": "INTEGER NOT NULL", "timestamp": "DATETIME DEFAULT CURRENT_TIMESTAMP"}


class StatementFailed(Exception):
    def __init__(self, statement: Statement, cause: DatabaseError) -> None:
        super().__init__(str(cause))
        self.statement = statement
        self.cause = cause


@dataclass(frozen=True)
class SqlError:
    """A database error reduced to what the summary reports."""

    sqlstate: str | None
    message: str
    position: int | None  # 1-based character position within the statement


@dataclass(frozen=True)
class HistoryTable:
    """Where the history table is: `schema` None on SQLite."""

    schema: str | None
    name: str

    @property
    def sql(self) -> str:
        return quoted(self.schema, self.name)


def split_table_name(name: str) -> tuple[str | None, str]:
    """`[schema.]table` as (schema or None, table)."""
    if not _TABLE_NAME.match(name):
        raise UsageError(f"history table {name!r} is not a plain [schema.]table name")
    schema, _, table = name.rpartition(".")
    return schema or None, table


def advisory_key(table_name: str, lane: str) -> int:
    """A stable signed 64-bit key per history table and lane: separate apps in one database do not
    block each other, and a long background backfill does not block the next version's expand."""
    digest = hashlib.sha256(f"lockgate:{table_name}:{lane}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def advisory_ids(key: int) -> tuple[int, int]:
    """(classid, objid): how pg_locks shows the advisory lock on a 64-bit key."""
    return (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF


class Database:
    """The migration connection (autocommit; transactions are begun and ended explicitly)."""

    def __init__(self, target: Target, table_name: str, search_schema: str | None = None) -> None:
        self.target = target
        schema, table = split_table_name(table_name)
        self.table_name = table_name  # as configured: the lock keys derive from it, as they always did
        self.is_postgres = target.dialect == "postgresql"
        self.search_schema = search_schema  # a schema target's: first on every migration's search_path
        if search_schema and not self.is_postgres:
            raise UsageError("a schema target needs PostgreSQL")
        self.conn = self.connect()
        self._search_schema_first()
        # Qualified once, so a script that empties the search_path cannot hide the table from
        # the history row written in its own transaction.
        self.table = HistoryTable(schema or self._default_schema(table), table)

    def connect(self) -> Connection:
        return connect(self.target)

    def _default_schema(self, table: str) -> str | None:
        """Where an unqualified name resolves now: an existing table's schema, else the first
        schema of the search_path (where CREATE TABLE would put it)."""
        if not self.is_postgres:
            return None
        schema = self.conn.scalar(
            "SELECT coalesce((SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = to_regclass(quote_ident(%(t)s))), current_schema())",
            {"t": table},
        )
        if schema is None:
            raise UsageError(
                "the search_path names no existing schema to hold the history table: "
                "create one or set --history-table to schema.table"
            )
        return str(schema)

    def _search_schema_first(self) -> None:
        """A schema target's schema first; shared tables stay reachable in public."""
        if self.search_schema:
            self.execute(f"SET search_path = {quoted(self.search_schema)}, public")

    def close(self) -> None:
        self.conn.close()

    # statements and transactions

    def split(self, sql: str) -> list[Statement]:
        # Imported here: the SQL parser is slow to load, and `lockgate exec` never splits SQL.
        from .statements import split_postgres, split_sqlite

        return split_postgres(sql) if self.is_postgres else split_sqlite(sql)

    def execute(self, sql: str) -> None:
        self.conn.execute(sql)

    def run(self, statements: Sequence[Statement]) -> None:
        """Run a script's statements in order, feeding each `COPY ... FROM stdin` its rows; raise
        StatementFailed naming the statement that failed. PostgreSQL gets the others pipelined
        (sent without waiting for each reply), so 90k INSERTs do not cost 90k round trips."""
        if not self.is_postgres:
            for statement in statements:
                try:
                    self.execute(statement.sql)
                except DatabaseError as exc:
                    raise StatementFailed(statement, exc) from None
            return
        driver = self.conn.driver
        cursors = [driver.cursor() for _ in range(min(len(statements), PIPELINE_DEPTH))]  # reused batch after batch
        for batch in _batches(statements):
            if batch[0].copy_data is not None:
                self._copy(batch[0])
            else:
                self._pipelined(batch, cursors[: len(batch)])

    def _pipelined(self, batch: list[Statement], cursors: list[psycopg.Cursor[Any]]) -> None:
        import psycopg

        pipelined = len(batch) > 1 and psycopg.Pipeline.is_supported()  # libpq >= 14
        try:
            with self.conn.driver.pipeline() if pipelined else contextlib.nullcontext():
                for cursor, statement in zip(cursors, batch, strict=True):
                    cursor.execute(statement.sql, prepare=False)
        except psycopg.Error as exc:
            # Replies come in order, and a cursor drops its last result when it executes again and
            # gets none for a statement that failed: the first cursor without a result is the
            # statement that failed (those after it were skipped).
            failed = next((s for s, c in zip(batch, cursors, strict=True) if c.pgresult is None), batch[-1])
            raise StatementFailed(failed, DatabaseError(exc)) from None

    def _copy(self, statement: Statement) -> None:
        import psycopg

        try:
            with self.conn.driver.cursor() as cursor, cursor.copy(statement.sql) as copy:
                copy.write(statement.copy_data or "")
        except psycopg.Error as exc:
            raise StatementFailed(statement, DatabaseError(exc)) from None

    def on_notice(self, show: Callable[[str], None]) -> None:
        """Pass the server's notices (RAISE NOTICE, "... already exists, skipping") to `show`."""
        if self.is_postgres:
            self.conn.driver.add_notice_handler(lambda diag: show(f"{diag.severity}: {diag.message_primary}"))

    def begin(self) -> None:
        self.execute("BEGIN")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        with contextlib.suppress(DatabaseError):  # the connection may already be out of its transaction
            self.execute("ROLLBACK")

    def fresh_session(self, lock_timeout_ms: int, statement_timeout_s: float) -> None:
        """Every migration starts from the same session state: what an earlier script SET (a
        search_path, a role, `lock_timeout = 0`) is reset, and lockgate's own timeouts re-applied."""
        if not self.is_postgres:
            return
        self.execute("RESET ALL")
        self.execute("RESET ROLE")
        self._search_schema_first()
        self.set_timeouts(lock_timeout_ms, statement_timeout_s)

    def set_timeouts(self, lock_timeout_ms: int, statement_timeout_s: float) -> None:
        if not self.is_postgres:
            return
        self.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")
        self.execute(f"SET statement_timeout = {int(statement_timeout_s * 1000)}")
        if int(self.conn.scalar("SHOW server_version_num") or 0) >= 140000:
            # If the runner dies mid-statement, stop the statement (and its locks) within a
            # second instead of letting a long DDL run on for nobody.
            self.execute("SET client_connection_check_interval = 1000")

    def error_of(self, exc: DatabaseError) -> SqlError:
        orig = exc.orig
        if self.is_postgres:
            diag = getattr(orig, "diag", None)
            position = getattr(diag, "statement_position", None)
            message = getattr(diag, "message_primary", None) or first_line(orig)
            detail = getattr(diag, "message_detail", None)
            context = getattr(diag, "context", None) or ""
            if context.startswith("COPY "):  # which row of a COPY's data: "COPY t, line 3, column id: ..."
                detail = f"{detail}; {context}" if detail else context
            return SqlError(
                getattr(orig, "sqlstate", None),
                f"{message} ({detail})" if detail else message,
                int(position) if position else None,
            )
        return SqlError(getattr(orig, "sqlite_errorname", None), str(orig), None)

    def installed_by(self) -> str:
        if self.is_postgres:
            return str(self.conn.scalar("SELECT current_user"))
        return getpass.getuser()

    # the history table

    def history_exists(self) -> bool:
        if self.is_postgres:
            return bool(
                self.conn.scalar(
                    "SELECT EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %(s)s AND c.relname = %(t)s AND c.relkind IN ('r', 'p', 'v', 'm', 'f'))",
                    {"s": self.table.schema, "t": self.table.name},
                )
            )
        catalog = quoted(self.table.schema, "sqlite_master")
        found = f"SELECT 1 FROM {catalog} WHERE type IN ('table', 'view') AND name = %(t)s"
        return self.conn.scalar(found, {"t": self.table.name}) is not None

    def ensure_history(self) -> None:
        """Create the table once, even when runners of different lanes start together."""
        if self.history_exists():
            return
        self._require_schema()
        self.begin()
        try:
            self.lock_table_creation()
            if not self.history_exists():
                columns = _COLUMNS.format(**(_POSTGRES_TYPES if self.is_postgres else _SQLITE_TYPES))
                self.execute(f"CREATE TABLE {self.table.sql} ({columns})")
            self.commit()
        except BaseException:
            self.rollback()
            raise

    def lock_table_creation(self) -> None:
        """In the open transaction, wait for any other runner creating lockgate's tables (PostgreSQL)."""
        if self.is_postgres:
            self.execute(f"SELECT pg_advisory_xact_lock({advisory_key(self.table_name, CREATE_TABLES)})")

    def _require_schema(self) -> None:
        if not self.is_postgres:
            return
        schema = self.table.schema
        if not self.conn.scalar("SELECT to_regnamespace(quote_ident(%(s)s))", {"s": schema}):
            raise UsageError(f'schema "{schema}" does not exist: create it or set --history-table')

    def read_history(self) -> list[HistoryRow]:
        if not self.history_exists():
            return []
        return [_history_row(r) for r in self.conn.mappings(f"SELECT * FROM {self.table.sql} ORDER BY installed_rank")]

    def record(self, **values: Any) -> int:
        """Insert a row; its installed_rank."""
        names = ", ".join(values)
        placeholders = ", ".join(f"%({name})s" for name in values)
        sql = f"INSERT INTO {self.table.sql} ({names}) VALUES ({placeholders})"
        if self.is_postgres:
            return int(self.conn.one(f"{sql} RETURNING installed_rank", values)[0])
        return int(self.conn.execute(sql, values).lastrowid)  # RETURNING needs SQLite 3.35

    def update_row(self, rank: int, **values: Any) -> None:
        assignments = ", ".join(f"{name} = %({name})s" for name in values)
        sql = f"UPDATE {self.table.sql} SET {assignments} WHERE installed_rank = %(installed_rank)s"
        self.conn.execute(sql, values | {"installed_rank": rank})

    def delete_failed(self) -> int:
        """Failed migrations go; failed `lockgate exec` runs stay: they are the audit trail."""
        sql = f"DELETE FROM {self.table.sql} WHERE NOT success AND phase <> %(exec)s"
        return int(self.conn.execute(sql, {"exec": EXEC}).rowcount)

    # invalid indexes left by failed concurrent builds (PostgreSQL)

    def invalid_indexes(self, table: str) -> dict[str, str]:
        """INVALID indexes on `table`: qualified name -> bare name."""
        rows = self.conn.execute(
            "SELECT format('%%I.%%I', n.nspname, c.relname), c.relname FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE NOT i.indisvalid AND i.indrelid = to_regclass(%(t)s)",
            {"t": table},
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    def table_of_index(self, index: str) -> str | None:
        found = self.conn.scalar(
            "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.indexrelid = to_regclass(%(i)s)",
            {"i": index},
        )
        return None if found is None else str(found)


def unexpected(exc: Exception) -> LockgateError:
    """Any other failure as one line naming its cause (exit 1): a Job log or a --json reader
    needs the cause, not a traceback."""
    if isinstance(exc, DatabaseError):
        return LockgateError(f"database error [{getattr(exc.orig, 'sqlstate', None)}]: {first_line(exc.orig)}")
    return LockgateError(f"unexpected {type(exc).__name__}: {first_line(exc)}")


def _batches(statements: Sequence[Statement]) -> Iterator[list[Statement]]:
    """Runs of up to PIPELINE_DEPTH statements to pipeline; each COPY alone (COPY cannot be pipelined)."""
    for copies, run in itertools.groupby(statements, key=lambda s: s.copy_data is not None):
        items, size = list(run), 1 if copies else PIPELINE_DEPTH
        for start in range(0, len(items), size):
            yield items[start : start + size]


def _history_row(row: dict[str, Any]) -> HistoryRow:
    installed_on = row["installed_on"]
    return HistoryRow(
        rank=row["installed_rank"],
        version=Version.parse(row["version"]) if row["version"] else None,
        phase=row["phase"],
        description=row["description"],
        script=row["script"],
        checksum=row["checksum"],
        installed_by=row["installed_by"],
        # SQLite keeps timestamps as text
        installed_on=datetime.fromisoformat(installed_on) if isinstance(installed_on, str) else installed_on,
        execution_ms=row["execution_ms"],
        success=bool(row["success"]),
    )

"""The database shell of the runner: connections, statements, transactions, the history table.

PostgreSQL (psycopg 3) is first-class; SQLite serves local trials with the same semantics
where SQLite allows. Both are reached through SQLAlchemy engines, with transactions
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
from typing import TYPE_CHECKING, Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url

from ..shared import redaction
from ..shared.errors import LockgateError, UsageError
from ..shared.phases import CREATE_TABLES, EXEC
from ..shared.versions import Version
from .history import HistoryRow

if TYPE_CHECKING:
    from .statements import Statement

_DRIVERS = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "sqlite": "sqlite",
}
PIPELINE_DEPTH = 1000  # statements sent before waiting for their replies
_TABLE_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$")


class StatementFailed(Exception):
    def __init__(self, statement: Statement, cause: sa.exc.DBAPIError) -> None:
        super().__init__(str(cause))
        self.statement = statement
        self.cause = cause


@dataclass(frozen=True)
class SqlError:
    """A database error reduced to what the summary reports."""

    sqlstate: str | None
    message: str
    position: int | None  # 1-based character position within the statement


def split_table_name(name: str) -> tuple[str | None, str]:
    """`[schema.]table` as (schema or None, table)."""
    if not _TABLE_NAME.match(name):
        raise UsageError(f"history table {name!r} is not a plain [schema.]table name")
    schema, _, table = name.rpartition(".")
    return schema or None, table


def history_table(table: str, schema: str | None) -> sa.Table:
    return sa.Table(
        table,
        sa.MetaData(schema=schema),
        sa.Column("installed_rank", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version", sa.Text),
        sa.Column("phase", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("script", sa.Text, nullable=False),
        sa.Column("checksum", sa.Text),
        sa.Column("installed_by", sa.Text, nullable=False),
        sa.Column("installed_on", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("execution_ms", sa.Integer, nullable=False),
        sa.Column("success", sa.Boolean, nullable=False),
    )


def advisory_key(table_name: str, lane: str) -> int:
    """A stable signed 64-bit key per history table and lane: separate apps in one database do not
    block each other, and a long background backfill does not block the next version's expand."""
    digest = hashlib.sha256(f"lockgate:{table_name}:{lane}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def advisory_ids(key: int) -> tuple[int, int]:
    """(classid, objid): how pg_locks shows the advisory lock on a 64-bit key."""
    return (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF


def create_engine(url: str) -> sa.Engine:
    """An engine for a postgresql:// or sqlite:/// URL; the URL never appears in an error."""
    redaction.register(url)
    try:
        parsed = make_url(url)
    except Exception:
        raise UsageError(
            "the database URL does not parse: expected postgresql://user:password@host:port/dbname or sqlite:///path"
        ) from None
    redaction.register(parsed.password if isinstance(parsed.password, str) else None)
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise UsageError(f"unsupported database {parsed.drivername!r}: use a postgresql:// or sqlite:/// URL")
    # No automatic prepared statements: a statement repeated five times (a lock poll, a batch)
    # would be prepared on one server session and executed on another behind a pooler.
    postgres = {"application_name": "lockgate", "connect_timeout": 10, "prepare_threshold": None}
    connect_args: dict[str, Any] = postgres if driver != "sqlite" else {"timeout": 30}
    return sa.create_engine(parsed.set(drivername=driver), poolclass=sa.pool.NullPool, connect_args=connect_args)


def describe_target(engine: sa.Engine) -> str:
    """host:port/database, for messages; never the user or password."""
    url = engine.url
    if url.drivername == "sqlite":
        return f"sqlite {url.database or ':memory:'}"
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"


class Database:
    """The migration connection (autocommit; transactions are begun and ended explicitly)."""

    def __init__(self, engine: sa.Engine, table_name: str) -> None:
        self.engine = engine
        schema, table = split_table_name(table_name)
        self.table_name = table_name  # as configured: the lock keys derive from it, as they always did
        self.is_postgres = engine.dialect.name == "postgresql"
        self.conn = self.connect()
        # Qualified once, so a script that empties the search_path cannot hide the table from
        # the history row written in its own transaction.
        self.table = history_table(table, schema or self._default_schema(table))

    def connect(self) -> Connection:
        try:
            conn = self.engine.connect()
        except sa.exc.DBAPIError as exc:
            raise UsageError(
                f"cannot connect to the database at {describe_target(self.engine)}: {_first_line(exc.orig)}"
            ) from None
        return conn.execution_options(isolation_level="AUTOCOMMIT", no_parameters=True)

    def _default_schema(self, table: str) -> str | None:
        """Where an unqualified name resolves now: an existing table's schema, else the first
        schema of the search_path (where CREATE TABLE would put it)."""
        if not self.is_postgres:
            return None
        schema = self.conn.execute(
            sa.text(
                "SELECT coalesce((SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.oid = to_regclass(quote_ident(:t))), current_schema())"
            ),
            {"t": table},
        ).scalar()
        if schema is None:
            raise UsageError(
                "the search_path names no existing schema to hold the history table: "
                "create one or set --history-table to schema.table"
            )
        return str(schema)

    def close(self) -> None:
        self.conn.close()

    # statements and transactions

    def split(self, sql: str) -> list[Statement]:
        # Imported here: the SQL parser is slow to load, and `lockgate exec` never splits SQL.
        from .statements import split_postgres, split_sqlite

        return split_postgres(sql) if self.is_postgres else split_sqlite(sql)

    def execute(self, sql: str) -> None:
        self.conn.exec_driver_sql(sql)

    def run(self, statements: Sequence[Statement]) -> None:
        """Run a script's statements in order, feeding each `COPY ... FROM stdin` its rows; raise
        StatementFailed naming the statement that failed. PostgreSQL gets the others pipelined
        (sent without waiting for each reply), so 90k INSERTs do not cost 90k round trips."""
        if not self.is_postgres:
            for statement in statements:
                try:
                    self.execute(statement.sql)
                except sa.exc.DBAPIError as exc:
                    raise StatementFailed(statement, exc) from None
            return
        driver = self._driver()
        cursors = [driver.cursor() for _ in range(min(len(statements), PIPELINE_DEPTH))]  # reused batch after batch
        for batch in _batches(statements):
            if batch[0].copy_data is not None:
                self._copy(batch[0])
            else:
                self._pipelined(batch, cursors[: len(batch)])

    def _pipelined(self, batch: list[Statement], cursors: list[psycopg.Cursor[Any]]) -> None:
        pipelined = len(batch) > 1 and psycopg.Pipeline.is_supported()  # libpq >= 14
        try:
            with self._driver().pipeline() if pipelined else contextlib.nullcontext():
                for cursor, statement in zip(cursors, batch, strict=True):
                    cursor.execute(statement.sql, prepare=False)
        except psycopg.Error as exc:
            # Replies come in order, and a cursor drops its last result when it executes again and
            # gets none for a statement that failed: the first cursor without a result is the
            # statement that failed (those after it were skipped).
            failed = next((s for s, c in zip(batch, cursors, strict=True) if c.pgresult is None), batch[-1])
            raise StatementFailed(failed, _wrapped(failed, exc)) from None

    def _copy(self, statement: Statement) -> None:
        try:
            with self._driver().cursor() as cursor, cursor.copy(statement.sql) as copy:
                copy.write(statement.copy_data or "")
        except psycopg.Error as exc:
            raise StatementFailed(statement, _wrapped(statement, exc)) from None

    def _driver(self) -> psycopg.Connection[Any]:
        driver: psycopg.Connection[Any] = self.conn.connection.driver_connection  # type: ignore[assignment]
        return driver

    def on_notice(self, show: Callable[[str], None]) -> None:
        """Pass the server's notices (RAISE NOTICE, "... already exists, skipping") to `show`."""
        if self.is_postgres:
            self._driver().add_notice_handler(lambda diag: show(f"{diag.severity}: {diag.message_primary}"))

    def begin(self) -> None:
        self.execute("BEGIN")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        with contextlib.suppress(sa.exc.DBAPIError):  # the connection may already be out of its transaction
            self.execute("ROLLBACK")

    def fresh_session(self, lock_timeout_ms: int, statement_timeout_s: float) -> None:
        """Every migration starts from the same session state: what an earlier script SET (a
        search_path, a role, `lock_timeout = 0`) is reset, and lockgate's own timeouts re-applied."""
        if not self.is_postgres:
            return
        self.execute("RESET ALL")
        self.execute("RESET ROLE")
        self.set_timeouts(lock_timeout_ms, statement_timeout_s)

    def set_timeouts(self, lock_timeout_ms: int, statement_timeout_s: float) -> None:
        if not self.is_postgres:
            return
        self.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")
        self.execute(f"SET statement_timeout = {int(statement_timeout_s * 1000)}")
        if int(self.conn.exec_driver_sql("SHOW server_version_num").scalar() or 0) >= 140000:
            # If the runner dies mid-statement, stop the statement (and its locks) within a
            # second instead of letting a long DDL run on for nobody.
            self.execute("SET client_connection_check_interval = 1000")

    def error_of(self, exc: sa.exc.DBAPIError) -> SqlError:
        orig = exc.orig
        if self.is_postgres:
            diag = getattr(orig, "diag", None)
            position = getattr(diag, "statement_position", None)
            message = getattr(diag, "message_primary", None) or _first_line(orig)
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
            return str(self.conn.exec_driver_sql("SELECT current_user").scalar())
        return getpass.getuser()

    # the history table

    def history_exists(self) -> bool:
        return sa.inspect(self.conn).has_table(self.table.name, schema=self.table.schema)

    def ensure_history(self) -> None:
        """Create the table once, even when runners of different lanes start together."""
        if self.history_exists():
            return
        self._require_schema()
        self.begin()
        try:
            self.lock_table_creation()
            if not self.history_exists():
                self.table.create(self.conn)
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
        if not self.conn.execute(sa.text("SELECT to_regnamespace(quote_ident(:s))"), {"s": schema}).scalar():
            raise UsageError(f'schema "{schema}" does not exist: create it or set --history-table')

    def read_history(self) -> list[HistoryRow]:
        if not self.history_exists():
            return []
        rows = self.conn.execute(sa.select(self.table).order_by(self.table.c.installed_rank))
        return [_history_row(r._mapping) for r in rows]

    def record(self, **values: Any) -> int:
        """Insert a row; its installed_rank."""
        inserted = self.conn.execute(self.table.insert().values(**values)).inserted_primary_key
        assert inserted is not None  # an INSERT of one row has one key
        return int(inserted[0])

    def update_row(self, rank: int, **values: Any) -> None:
        self.conn.execute(self.table.update().where(self.table.c.installed_rank == rank).values(**values))

    def delete_failed(self) -> int:
        """Failed migrations go; failed `lockgate exec` runs stay: they are the audit trail."""
        failed = self.table.c.success.is_(False) & (self.table.c.phase != EXEC)
        return self.conn.execute(self.table.delete().where(failed)).rowcount

    # invalid indexes left by failed concurrent builds (PostgreSQL)

    def invalid_indexes(self, table: str) -> dict[str, str]:
        """INVALID indexes on `table`: qualified name -> bare name."""
        rows = self.conn.execute(
            sa.text(
                "SELECT format('%I.%I', n.nspname, c.relname), c.relname FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE NOT i.indisvalid AND i.indrelid = to_regclass(:t)"
            ),
            {"t": table},
        )
        return {r[0]: r[1] for r in rows}

    def table_of_index(self, index: str) -> str | None:
        return self.conn.execute(
            sa.text(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.indexrelid = to_regclass(:i)"
            ),
            {"i": index},
        ).scalar()


def unexpected(exc: Exception) -> LockgateError:
    """Any other failure as one line naming its cause (exit 1): a Job log or a --json reader
    needs the cause, not a traceback."""
    if isinstance(exc, sa.exc.DBAPIError):
        return LockgateError(f"database error [{getattr(exc.orig, 'sqlstate', None)}]: {_first_line(exc.orig)}")
    return LockgateError(f"unexpected {type(exc).__name__}: {_first_line(exc)}")


def _batches(statements: Sequence[Statement]) -> Iterator[list[Statement]]:
    """Runs of up to PIPELINE_DEPTH statements to pipeline; each COPY alone (COPY cannot be pipelined)."""
    for copies, run in itertools.groupby(statements, key=lambda s: s.copy_data is not None):
        items, size = list(run), 1 if copies else PIPELINE_DEPTH
        for start in range(0, len(items), size):
            yield items[start : start + size]


def _wrapped(statement: Statement, exc: psycopg.Error) -> sa.exc.DBAPIError:
    """A driver error as SQLAlchemy wraps those it raises itself, for one kind of error handling."""
    return sa.exc.DBAPIError(statement.sql[:200], None, exc)


def _history_row(row: Any) -> HistoryRow:
    return HistoryRow(
        rank=row["installed_rank"],
        version=Version.parse(row["version"]) if row["version"] else None,
        phase=row["phase"],
        description=row["description"],
        script=row["script"],
        checksum=row["checksum"],
        installed_by=row["installed_by"],
        installed_on=row["installed_on"],
        execution_ms=row["execution_ms"],
        success=bool(row["success"]),
    )


def _first_line(exc: object) -> str:
    return redaction.redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)

"""The database shell of the runner: connections, the migration lock, the history table.

PostgreSQL (psycopg 3) is first-class; SQLite serves local trials with the same semantics
where SQLite allows. Both are reached through SQLAlchemy engines, with transactions
controlled explicitly so that each migration and its history row commit together.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url

from . import redaction
from .errors import LockNotAcquired, UsageError
from .history import HistoryRow
from .statements import Statement, split_postgres, split_sqlite
from .versions import Version

_DRIVERS = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "sqlite": "sqlite",
}
_TABLE_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$")
LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True)
class SqlError:
    """A database error reduced to what the summary reports."""

    sqlstate: str | None
    message: str
    position: int | None  # 1-based character position within the statement


def history_table(name: str) -> sa.Table:
    if not _TABLE_NAME.match(name):
        raise UsageError(f"history table {name!r} is not a plain [schema.]table name")
    schema, _, table = name.rpartition(".")
    return sa.Table(
        table,
        sa.MetaData(schema=schema or None),
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
    connect_args: dict[str, Any] = (
        {"application_name": "lockgate", "connect_timeout": 10} if driver != "sqlite" else {"timeout": 30}
    )
    return sa.create_engine(parsed.set(drivername=driver), poolclass=sa.pool.NullPool, connect_args=connect_args)


def describe_target(engine: sa.Engine) -> str:
    """host:port/database, for messages; never the user or password."""
    url = engine.url
    if url.drivername == "sqlite":
        return f"sqlite {url.database or ':memory:'}"
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"


class Database:
    """One migration connection plus, while locked, a dedicated lock connection."""

    def __init__(self, engine: sa.Engine, table_name: str) -> None:
        self.engine = engine
        self.table = history_table(table_name)
        self.table_name = table_name
        self.is_postgres = engine.dialect.name == "postgresql"
        self.conn = self._connect()

    def _connect(self) -> Connection:
        try:
            conn = self.engine.connect()
        except sa.exc.DBAPIError as exc:
            raise UsageError(
                f"cannot connect to the database at {describe_target(self.engine)}: {_first_line(exc.orig)}"
            ) from None
        return conn.execution_options(isolation_level="AUTOCOMMIT", no_parameters=True)

    def close(self) -> None:
        self.conn.close()

    # statements and transactions

    def split(self, sql: str) -> list[Statement]:
        return split_postgres(sql) if self.is_postgres else split_sqlite(sql)

    def execute(self, sql: str) -> None:
        self.conn.exec_driver_sql(sql)

    def begin(self) -> None:
        self.execute("BEGIN")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        with contextlib.suppress(sa.exc.DBAPIError):  # the connection may already be out of its transaction
            self.execute("ROLLBACK")

    def set_timeouts(self, lock_timeout_ms: int, statement_timeout_s: float) -> None:
        if not self.is_postgres:
            return
        self.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")
        self.execute(f"SET statement_timeout = {int(statement_timeout_s * 1000)}")
        if int(self.conn.exec_driver_sql("SHOW server_version_num").scalar()) >= 140000:
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
        self.begin()
        try:
            if self.is_postgres:
                self.execute(f"SELECT pg_advisory_xact_lock({advisory_key(self.table_name, 'create')})")
            if not self.history_exists():
                self.table.create(self.conn)
            self.commit()
        except BaseException:
            self.rollback()
            raise

    def read_history(self) -> list[HistoryRow]:
        if not self.history_exists():
            return []
        rows = self.conn.execute(sa.select(self.table).order_by(self.table.c.installed_rank))
        return [_history_row(r._mapping) for r in rows]

    def record(self, **values: Any) -> None:
        self.conn.execute(self.table.insert().values(**values))

    def delete_failed(self) -> int:
        return self.conn.execute(self.table.delete().where(self.table.c.success.is_(False))).rowcount

    # the migration lock

    @contextmanager
    def migration_lock(self, lane: str, wait_seconds: float, progress: Callable[[str], None]) -> Iterator[None]:
        """Hold the lock that makes one runner at a time migrate this lane of this history table."""
        if self.is_postgres:
            with self._advisory_lock(advisory_key(self.table_name, lane), wait_seconds, progress):
                yield
        else:
            with _file_lock(self.engine.url.database, wait_seconds, progress):
                yield

    @contextmanager
    def _advisory_lock(self, key: int, wait_seconds: float, progress: Callable[[str], None]) -> Iterator[None]:
        # A session-level lock on its own connection: migrations commit and roll back on the
        # other one, and if this process dies the server ends the session and frees the lock.
        lock_conn = self._connect()
        try:
            if not lock_conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar():
                progress(
                    f"waiting up to {wait_seconds:g}s for the migration lock, held by {self._holder(lock_conn, key)}"
                )
                self._wait_for_lock(lock_conn, key, wait_seconds)
            yield
        finally:
            lock_conn.close()

    def _wait_for_lock(self, lock_conn: Connection, key: int, wait_seconds: float) -> None:
        if wait_seconds <= 0:
            raise LockNotAcquired("another lockgate runner holds the migration lock; retry later or pass --lock-wait")
        lock_conn.exec_driver_sql(f"SET lock_timeout = {max(1, int(wait_seconds * 1000))}")
        try:
            lock_conn.exec_driver_sql(f"SELECT pg_advisory_lock({key})")
        except sa.exc.DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            raise LockNotAcquired(
                f"another lockgate runner held the migration lock for more than {wait_seconds:g}s; "
                "retry later or raise --lock-wait"
            ) from None

    @staticmethod
    def _holder(lock_conn: Connection, key: int) -> str:
        row = lock_conn.execute(
            sa.text(
                "SELECT a.pid, a.application_name, a.client_addr::text, now() - a.backend_start FROM pg_locks l "
                "JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.classid = :classid AND l.objid = :objid AND l.objsubid = 1"
            ),
            {"classid": (key >> 32) & 0xFFFFFFFF, "objid": key & 0xFFFFFFFF},
        ).first()
        return (
            f"pid {row[0]} ({row[1] or 'no application_name'} from {row[2] or 'local socket'}, connected {row[3]} ago)"
            if row
            else "another session"
        )

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


def advisory_key(table_name: str, lane: str) -> int:
    """A stable signed 64-bit key per history table and lane: separate apps in one database do not
    block each other, and a long background backfill does not block the next version's expand."""
    digest = hashlib.sha256(f"lockgate:{table_name}:{lane}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def _file_lock(database: str | None, wait_seconds: float, progress: Callable[[str], None]) -> Iterator[None]:
    """SQLite's stand-in for the advisory lock: an flock the kernel drops if the process dies.
    SQLite allows one writer at a time anyway, so all lanes share it."""
    if not database or database == ":memory:":
        yield
        return
    path = Path(database).with_name(Path(database).name + ".lockgate-lock")
    with open(path, "a") as handle:
        deadline = time.monotonic() + wait_seconds
        while not _try_flock(handle):
            if time.monotonic() >= deadline:
                raise LockNotAcquired(f"another lockgate runner holds {path.name}; retry later or raise --lock-wait")
            if wait_seconds and deadline - time.monotonic() >= wait_seconds - 0.2:
                progress(f"waiting up to {wait_seconds:g}s for the migration lock held by another runner")
            time.sleep(0.2)
        yield


def _try_flock(handle: Any) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


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

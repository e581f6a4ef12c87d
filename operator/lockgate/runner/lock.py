"""The runner's exactly-once rule: one runner at a time per history table and lane.

PostgreSQL: a session-level advisory lock on a dedicated connection, polled with a bounded
wait, freed by the server if the runner dies. SQLite: an flock the kernel frees likewise.
Which lane a command takes is shared.phases.lane().
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ..shared.errors import LockNotAcquired, UsageError
from .pooler import pooled_per_transaction, pooler_refusal

if TYPE_CHECKING:
    from .database import Database

Progress = Callable[[str], None]
LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout expired: a migration's statements retry on it
POLL_FIRST, POLL_MAX = 0.05, 1.0  # seconds between polls for a held lock: doubling, capped


@contextmanager
def migration_lock(db: Database, lane: str, wait_seconds: float, progress: Progress) -> Iterator[None]:
    """Hold the lock that makes one runner at a time migrate this lane of this history table."""
    if db.is_postgres:
        with _advisory_lock(db, advisory_key(db.table_name, lane), wait_seconds, progress):
            yield
    else:
        with _file_lock(db.engine.url.database, wait_seconds, progress):
            yield


def advisory_key(table_name: str, lane: str) -> int:
    """A stable signed 64-bit key per history table and lane: separate apps in one database do not
    block each other, and a long background backfill does not block the next version's expand."""
    digest = hashlib.sha256(f"lockgate:{table_name}:{lane}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def _advisory_lock(db: Database, key: int, wait_seconds: float, progress: Progress) -> Iterator[None]:
    # A session-level lock on its own connection: migrations commit and roll back on the
    # other one, and if this process dies the server ends the session and frees the lock.
    lock_conn = db.connect()
    try:
        if not _try_lock(lock_conn, key):
            progress(f"waiting up to {wait_seconds:g}s for the migration lock, held by {_holder(lock_conn, key)}")
            _wait_for_lock(lock_conn, key, wait_seconds)
        _refuse_transaction_pooling(lock_conn, db.conn, key)
        yield
    finally:
        lock_conn.close()


def _refuse_transaction_pooling(lock_conn: Connection, other: Connection, key: int) -> None:
    """Behind a transaction-mode pooler the lock protects nothing: find out and stop here.
    Each autocommit statement is a transaction a pooler may give another server session."""
    lock_pids = [_backend_pid(lock_conn)]
    other_pids = [_backend_pid(other)]
    lock_pids.append(_backend_pid(lock_conn))
    if pooled_per_transaction(lock_pids, other_pids):
        # Best effort: the lock now sits in a pooled server session that outlives this client
        # and would hold off every later runner, a correctly configured one included.
        with contextlib.suppress(DBAPIError):
            lock_conn.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
        raise UsageError(pooler_refusal(lock_pids, other_pids))


def _backend_pid(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() or 0)


def _wait_for_lock(lock_conn: Connection, key: int, wait_seconds: float) -> None:
    """Poll pg_try_advisory_lock with backoff. Never block inside pg_advisory_lock(): a session
    waiting there is mid-statement, holding a snapshot that a CREATE INDEX CONCURRENTLY in the lock
    holder must wait for (Flyway fixed the same in its issue 1654). Each poll is its own short
    autocommit statement, so between polls this session holds nothing."""
    if wait_seconds <= 0:
        raise LockNotAcquired("another lockgate runner holds the migration lock; retry later or pass --lock-wait")
    deadline = time.monotonic() + wait_seconds
    delay = POLL_FIRST
    while not _try_lock(lock_conn, key):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LockNotAcquired(
                f"another lockgate runner held the migration lock for more than {wait_seconds:g}s; "
                "retry later or raise --lock-wait"
            )
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, POLL_MAX)


def _try_lock(lock_conn: Connection, key: int) -> bool:
    return bool(lock_conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar())


def _holder(lock_conn: Connection, key: int) -> str:
    row = lock_conn.execute(
        text(
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


@contextmanager
def _file_lock(database: str | None, wait_seconds: float, progress: Progress) -> Iterator[None]:
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


def _try_flock(handle: TextIO) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False

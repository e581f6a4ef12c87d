"""The runner's exactly-once rule: one runner at a time per history table and lane.

PostgreSQL: an advisory lock on a dedicated connection, polled with a bounded wait, freed by
the server (or the pooler) if the runner dies. SQLite: an flock the kernel frees likewise.
Which lane a command takes is shared.phases.lane(); the key each lane locks is database.advisory_key().
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from ..shared.errors import LockNotAcquired, UsageError
from .connection import Connection, DatabaseError
from .database import Database, advisory_ids, advisory_key
from .pooler import Endpoint, holder_query, pooled_per_transaction, pooler_refusal, proven_direct
from .say import Say

LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout expired: a migration's statements retry on it
POLL_FIRST, POLL_MAX = 0.05, 1.0  # seconds between polls for a held lock: doubling, capped
SAMPLE_ROUNDS = 8  # statements per connection that must each stay in their own server session


@contextmanager
def migration_lock(db: Database, lane: str, wait_seconds: float, progress: Say) -> Iterator[None]:
    """Hold the lock that makes one runner at a time migrate this lane of this history table."""
    if db.is_postgres:
        with _advisory_lock(db, advisory_key(db.table_name, lane), wait_seconds, progress):
            yield
    else:
        with _file_lock(db.target.database, wait_seconds, progress):
            yield


@contextmanager
def _advisory_lock(db: Database, key: int, wait_seconds: float, progress: Say) -> Iterator[None]:
    # On sessions proven direct the lock is a session lock, as lockgate always took it: if the
    # process dies the server ends the session and frees it. Otherwise (a proxy, a session-mode
    # pool, a Unix socket) it is a transaction lock in a transaction kept open for the run: a
    # pooler keeps a transaction on one server session and ends it when its client goes, so the
    # lock cannot stay behind in a server session this runner can no longer reach.
    lock_conn = db.connect()
    try:
        session = _sessions_are_direct(lock_conn, db.conn)  # refuses a transaction pooler before any lock
        if not _try_lock(lock_conn, key, session):
            progress(f"waiting up to {wait_seconds:g}s for the migration lock, held by {_holder(lock_conn, key)}")
            _wait_for_lock(lock_conn, key, session, wait_seconds)
        if session:
            yield
            return
        held_by = _backend_pid(lock_conn)
        try:
            _keep_transaction_open(lock_conn)
            _refuse_transaction_pooling(lock_conn, db.conn)  # once more, now that more traffic went by
            yield
        finally:
            _release(lock_conn, key, held_by, progress)
    finally:
        lock_conn.close()


def _sessions_are_direct(lock_conn: Connection, other: Connection) -> bool:
    """True when the server sees both connections come from their own sockets; otherwise, once
    statements were seen not to wander between server sessions, False."""
    if all(proven_direct(_local_endpoint(c), _seen_by_server(c)) for c in (lock_conn, other)):
        return True
    _refuse_transaction_pooling(lock_conn, other)
    return False


def _refuse_transaction_pooling(lock_conn: Connection, other: Connection) -> None:
    """Each autocommit statement is a transaction a pooler in transaction mode may give another
    server session: alternate statements on both connections and compare their backends. Before
    the lock nothing is held; after it the lock connection is inside its transaction, which the
    caller rolls back, so a refusal leaves nothing behind either way."""
    samples: list[list[int]] = [[], []]
    for _ in range(SAMPLE_ROUNDS):
        for pids, conn in zip(samples, (lock_conn, other), strict=True):
            pids.append(_backend_pid(conn))
        if pooled_per_transaction(samples):
            raise UsageError(pooler_refusal(samples))


def _backend_pid(conn: Connection) -> int:
    return int(conn.scalar("SELECT pg_backend_pid()") or 0)


def _seen_by_server(conn: Connection) -> tuple[str | None, int | None]:
    row = conn.one("SELECT host(inet_client_addr()), inet_client_port()")
    return row[0], row[1]


def _local_endpoint(conn: Connection) -> Endpoint | None:
    """This end of the connection's socket; None for a Unix socket."""
    with socket.socket(fileno=os.dup(conn.driver.pgconn.socket)) as sock:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        host, port = sock.getsockname()[:2]
    return str(host), int(port)


def _keep_transaction_open(lock_conn: Connection) -> None:
    """The transaction holding the lock idles for the whole run: keep the server from ending it."""
    lock_conn.execute("SELECT set_config('idle_in_transaction_session_timeout', '0', true)")
    if int(lock_conn.scalar("SHOW server_version_num") or 0) >= 170000:
        lock_conn.execute("SELECT set_config('transaction_timeout', '0', true)")


def _release(lock_conn: Connection, key: int, held_by: int, progress: Say) -> None:
    """Roll back the transaction holding the lock: it runs in the one server session holding it."""
    try:
        lock_conn.execute("ROLLBACK")
    except DatabaseError:
        progress(
            f"the migration lock may still be held by server backend {held_by} until the server or pooler "
            f"notices the lost connection; if no lockgate runner is at work, free it with: {holder_query(*advisory_ids(key))}"
        )


def _wait_for_lock(lock_conn: Connection, key: int, session: bool, wait_seconds: float) -> None:
    """Poll with backoff. Never block inside pg_advisory_lock(): a session waiting there is
    mid-statement, holding a snapshot that a CREATE INDEX CONCURRENTLY in the lock holder must wait
    for (Flyway fixed the same in its issue 1654). Each poll is its own short statement or
    transaction, so between polls this session holds nothing."""
    if wait_seconds <= 0:
        raise LockNotAcquired(
            f"another lockgate runner holds the migration lock; retry later or pass --lock-wait. {_stale(key)}"
        )
    deadline = time.monotonic() + wait_seconds
    delay = POLL_FIRST
    while not _try_lock(lock_conn, key, session):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LockNotAcquired(
                f"another lockgate runner held the migration lock for more than {wait_seconds:g}s; "
                f"retry later or raise --lock-wait. {_stale(key)}"
            )
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, POLL_MAX)


def _stale(key: int) -> str:
    return (
        "If no lockgate runner is at work, a pooler's server session may hold it (left by an older "
        f"runner behind a transaction-mode pool): end that session with {holder_query(*advisory_ids(key))}"
    )


def _try_lock(lock_conn: Connection, key: int, session: bool) -> bool:
    if session:
        return bool(lock_conn.scalar(f"SELECT pg_try_advisory_lock({key})"))
    lock_conn.execute("BEGIN")
    if lock_conn.scalar(f"SELECT pg_try_advisory_xact_lock({key})"):
        return True
    lock_conn.execute("ROLLBACK")
    return False


def _holder(lock_conn: Connection, key: int) -> str:
    classid, objid = advisory_ids(key)
    row = lock_conn.first(
        "SELECT a.pid, a.application_name, a.client_addr::text, now() - a.backend_start FROM pg_locks l "
        "JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' AND l.granted "
        "AND l.classid = %(classid)s AND l.objid = %(objid)s AND l.objsubid = 1",
        {"classid": classid, "objid": objid},
    )
    return (
        f"pid {row[0]} ({row[1] or 'no application_name'} from {row[2] or 'local socket'}, connected {row[3]} ago)"
        if row
        else "another session"
    )


@contextmanager
def _file_lock(database: str | None, wait_seconds: float, progress: Say) -> Iterator[None]:
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

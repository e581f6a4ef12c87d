"""Throttling signals for batched background scripts: may the next batch run now?

A batched backfill yields to the database before each batch while a standby lags behind, the
target table is being vacuumed, or sessions queue for locks on it. `read_pressure` is the I/O
shell (two catalog queries, each its own autocommit statement, so nothing is held afterwards);
`decide` is the pure rule; `wait_reason` runs both and is what the batch loop calls.

Replication lag, read on the primary from pg_stat_replication, in two measures:
- `replay_lag` (time) is measured when the standby reports a replay position: on every WAL
  flush while WAL flows, else every wal_receiver_status_interval (10 s). So it is current while
  the backfill writes, may trail a stall by up to 10 s on an idle primary, and stays at its last
  value for a while after the standby caught up (then NULL). A standby that has replayed all
  WAL (byte lag 0) therefore counts as caught up whatever replay_lag still shows.
- byte lag, `pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)`, is exact at once: the
  backstop for a stalled standby whose replay_lag has not been measured yet.
Only physical standbys count: logical walsenders (subscriptions, CDC) and WAL receivers that
replay nothing (pg_receivewal, a base backup; replay_lsn NULL) are left out.

Privileges: without pg_read_all_stats (pg_monitor has it) PostgreSQL hides the lag of every
standby and which table another role's (or autovacuum's) VACUUM works on. Those signals then
never hold a batch back; `blind_spots` says so, for the runner to print once. Lock waits in
pg_locks are visible to every role.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from ..connection import Connection
from ..options import Limits

_STANDBYS = (
    "SELECT COALESCE(NULLIF(r.application_name, ''), 'pid ' || r.pid), r.state IS NULL, "
    "EXTRACT(epoch FROM r.replay_lag)::float8, pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint "
    "FROM pg_stat_replication r LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid "
    "WHERE s.slot_type IS DISTINCT FROM 'logical' ORDER BY 4 DESC NULLS LAST"
)
# One row whether or not the table exists. Progress rows and locks of other databases carry
# OIDs of their own catalogs, hence the database filters. A table's TOAST data is vacuumed
# as a relation of its own. Waiters for a table lock wait on a 'relation' lock; of those
# queued for one row, all but the first wait on a 'tuple' lock (the first waits on the xid).
_TABLE = (
    "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), v.autovacuum, v.phase, "
    "(SELECT count(DISTINCT l.pid) FROM pg_locks l WHERE NOT l.granted AND l.relation = c.oid "
    "  AND l.locktype IN ('relation', 'tuple') AND l.database = d.oid), "
    "(SELECT count(*) FROM pg_stat_progress_vacuum p WHERE p.relid IS NULL AND p.datid = d.oid) "
    "FROM (SELECT to_regclass(%(table)s) AS oid) t "
    "JOIN pg_database d ON d.datname = current_database() "
    "LEFT JOIN pg_class c ON c.oid = t.oid LEFT JOIN pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN LATERAL (SELECT a.backend_type = 'autovacuum worker' AS autovacuum, p.phase "
    "  FROM pg_stat_progress_vacuum p LEFT JOIN pg_stat_activity a ON a.pid = p.pid "
    "  WHERE p.datid = d.oid AND p.relid IN (c.oid, c.reltoastrelid) LIMIT 1) v ON true"
)


@dataclass(frozen=True)
class Standby:
    name: str  # application_name: the standby's cluster_name, else "walreceiver"
    replay_lag_s: float | None  # NULL when caught up and idle
    lag_bytes: int | None  # None: it replays nothing (pg_receivewal, a base backup)


@dataclass(frozen=True)
class Vacuum:
    autovacuum: bool
    phase: str


@dataclass(frozen=True)
class Pressure:
    """What the signals read at one moment."""

    standbys: tuple[Standby, ...] = ()
    hidden_standbys: int = 0  # walsenders whose details this role may not read
    table: str | None = None  # schema.table as resolved; None when it does not exist
    vacuum: Vacuum | None = None
    lock_waiters: int = 0
    hidden_vacuums: int = 0  # VACUUMs in this database on a table this role may not see


def wait_reason(connection: Connection, table: str, limits: Limits) -> str | None:
    """None when a batch may run now, else why it should wait, for the progress output.

    `connection` is the runner's connection (Database.conn: psycopg, autocommit),
    called between batches, outside any transaction. `table` is `[schema.]table` as SQL reads
    it: resolved with to_regclass on the session's search_path. SQLite has no such signals.
    """
    return decide(read_pressure(connection, table), limits)


def read_pressure(connection: Connection, table: str) -> Pressure:
    """The signals now: two statements, each its own transaction (the connection is autocommit)."""
    if not connection.is_postgres:
        return Pressure()
    _require_idle_autocommit(connection)
    rows = connection.execute(_STANDBYS).fetchall()
    name, autovacuum, phase, waiters, hidden_vacuums = connection.one(_TABLE, {"table": table})
    return Pressure(
        standbys=tuple(Standby(r[0], r[2], r[3]) for r in rows if not r[1]),
        hidden_standbys=sum(1 for r in rows if r[1]),
        table=name,
        vacuum=Vacuum(autovacuum, phase) if phase else None,
        lock_waiters=waiters,
        hidden_vacuums=hidden_vacuums,
    )


def _require_idle_autocommit(connection: Connection) -> None:
    # Inside a transaction, statistics views repeat the transaction's first reading, and in
    # non-autocommit mode the query would leave a transaction (and its snapshot) open.
    driver = connection.driver
    if not (driver.autocommit and driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE):
        raise ValueError("pressure signals are read on an autocommit connection outside a transaction")


def decide(pressure: Pressure, limits: Limits) -> str | None:
    """Every reason to wait, most urgent first: queued sessions are application traffic stalled now."""
    reasons = [
        reason
        for reason in (_lock_reason(pressure, limits), _lag_reason(pressure, limits), _vacuum_reason(pressure, limits))
        if reason
    ]
    return "; ".join(reasons) or None


def _lock_reason(pressure: Pressure, limits: Limits) -> str | None:
    limit = limits.max_lock_waiters
    if limit is None or pressure.lock_waiters <= limit:
        return None
    sessions = "1 session waits" if pressure.lock_waiters == 1 else f"{pressure.lock_waiters} sessions wait"
    return f"{sessions} for locks on {pressure.table}" + (f" (limit {limit})" if limit else "")


def _lag_reason(pressure: Pressure, limits: Limits) -> str | None:
    return next(filter(None, (_standby_reason(s, limits) for s in pressure.standbys)), None)


def _standby_reason(standby: Standby, limits: Limits) -> str | None:
    if not standby.lag_bytes:  # caught up (a replay_lag still shown is stale), or replays nothing
        return None
    seconds, most_seconds = standby.replay_lag_s, limits.max_replication_lag_s
    if seconds is not None and most_seconds is not None and seconds > most_seconds:
        return f"replication lag {seconds:.1f} s on standby {standby.name!r} (limit {most_seconds:g} s)"
    most_bytes = limits.max_replication_lag_bytes
    if most_bytes is not None and standby.lag_bytes > most_bytes:
        return f"replication lag {_size(standby.lag_bytes)} on standby {standby.name!r} (limit {_size(most_bytes)})"
    return None


def _vacuum_reason(pressure: Pressure, limits: Limits) -> str | None:
    if not (limits.wait_on_vacuum and pressure.vacuum):
        return None
    who = "autovacuum" if pressure.vacuum.autovacuum else "VACUUM"
    return f"{who} is running on {pressure.table} ({pressure.vacuum.phase})"


def blind_spots(pressure: Pressure) -> str | None:
    """What this role cannot see, for the runner to print once; None when it sees everything."""
    unseen = []
    if pressure.hidden_standbys:
        unseen.append(f"the replication lag of {_count(pressure.hidden_standbys, 'standby', 'standbys')}")
    if pressure.hidden_vacuums:
        unseen.append(f"which table {_count(pressure.hidden_vacuums, 'VACUUM works', 'VACUUMs work')} on")
    seen = " or ".join(unseen)
    return f"this role cannot see {seen}: grant it pg_monitor to throttle on them" if seen else None


def _count(n: int, one: str, many: str) -> str:
    return f"1 {one}" if n == 1 else f"{n} {many}"


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{n} bytes"

"""Throttling signals of batched background scripts: the pure rule, then each signal on a real
server (a paused streaming standby, a crawling VACUUM and autovacuum, a queue behind a lock)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
from sqlalchemy.engine import make_url

from devcluster.postgres import PostgresServer
from lockgate.cli.parser import build_parser
from lockgate.runner.batched.pressure import (
    Pressure,
    Standby,
    Vacuum,
    blind_spots,
    decide,
    read_pressure,
    wait_reason,
)
from lockgate.runner.connection import Connection, parse_url
from lockgate.runner.database import Database
from lockgate.runner.options import DEFAULT_HISTORY_TABLE, Limits

T = TypeVar("T")
GIB = 1 << 30
LAGGING = Standby("replica1", 12.34, 5000)
ORDERS = "public.orders"


@pytest.mark.parametrize(
    ("pressure", "limits", "reason"),
    [
        (Pressure(), Limits(), None),
        (Pressure(standbys=(Standby("replica1", 0.2, 300),)), Limits(), None),
        (Pressure(standbys=(LAGGING,)), Limits(), "replication lag 12.3 s on standby 'replica1' (limit 10 s)"),
        (Pressure(standbys=(LAGGING,)), Limits(max_replication_lag_s=12.5), None),
        (Pressure(standbys=(LAGGING,)), Limits(max_replication_lag_s=None), None),
        # caught up: a replay_lag still shown is the last measurement, not lag
        (Pressure(standbys=(Standby("replica1", 12.0, 0),)), Limits(), None),
        # replays nothing (pg_receivewal, a base backup)
        (Pressure(standbys=(Standby("pg_receivewal", None, None),)), Limits(), None),
        # stalled before replay_lag was measured: the byte lag holds the batch
        (
            Pressure(standbys=(Standby("b", None, 2 * GIB),)),
            Limits(),
            "replication lag 2 GiB on standby 'b' (limit 1 GiB)",
        ),
        (
            Pressure(standbys=(Standby("b", 1.0, 3 << 19),)),
            Limits(max_replication_lag_bytes=1 << 20),
            "replication lag 1.5 MiB on standby 'b' (limit 1 MiB)",
        ),
        (
            Pressure(standbys=(Standby("b", None, 900),)),
            Limits(max_replication_lag_bytes=500),
            "replication lag 900 bytes on standby 'b' (limit 500 bytes)",
        ),
        (Pressure(standbys=(Standby("b", None, 2 * GIB),)), Limits(max_replication_lag_bytes=None), None),
        (
            Pressure(standbys=(Standby("a", 0.1, 10), Standby("b", 30.0, 10))),
            Limits(),
            "replication lag 30.0 s on standby 'b' (limit 10 s)",
        ),
        (Pressure(table=ORDERS, lock_waiters=1), Limits(), "1 session waits for locks on public.orders"),
        (
            Pressure(table=ORDERS, lock_waiters=3),
            Limits(max_lock_waiters=2),
            "3 sessions wait for locks on public.orders (limit 2)",
        ),
        (Pressure(table=ORDERS, lock_waiters=2), Limits(max_lock_waiters=2), None),
        (Pressure(table=ORDERS, lock_waiters=5), Limits(max_lock_waiters=None), None),
        (
            Pressure(table=ORDERS, vacuum=Vacuum(True, "scanning heap")),
            Limits(),
            "autovacuum is running on public.orders (scanning heap)",
        ),
        (
            Pressure(table=ORDERS, vacuum=Vacuum(False, "vacuuming indexes")),
            Limits(),
            "VACUUM is running on public.orders (vacuuming indexes)",
        ),
        (Pressure(table=ORDERS, vacuum=Vacuum(True, "scanning heap")), Limits(wait_on_vacuum=False), None),
        (
            Pressure(standbys=(LAGGING,), table=ORDERS, vacuum=Vacuum(True, "scanning heap"), lock_waiters=2),
            Limits(),
            "2 sessions wait for locks on public.orders; replication lag 12.3 s on standby 'replica1' (limit 10 s); "
            "autovacuum is running on public.orders (scanning heap)",
        ),
        # what the role cannot see never holds a batch back
        (Pressure(hidden_standbys=2, hidden_vacuums=1), Limits(), None),
    ],
)
def test_decide(pressure: Pressure, limits: Limits, reason: str | None) -> None:
    assert decide(pressure, limits) == reason


@pytest.mark.parametrize(
    ("pressure", "note"),
    [
        (Pressure(standbys=(LAGGING,)), None),
        (
            Pressure(hidden_standbys=1),
            "this role cannot see the replication lag of 1 standby: grant it pg_monitor to throttle on them",
        ),
        (
            Pressure(hidden_standbys=2, hidden_vacuums=3),
            "this role cannot see the replication lag of 2 standbys or which table 3 VACUUMs work on: "
            "grant it pg_monitor to throttle on them",
        ),
        (
            Pressure(hidden_vacuums=1),
            "this role cannot see which table 1 VACUUM works on: grant it pg_monitor to throttle on them",
        ),
    ],
)
def test_blind_spots(pressure: Pressure, note: str | None) -> None:
    assert blind_spots(pressure) == note


def test_cli_options_map_onto_limits() -> None:
    def limits(*options: str) -> Limits:
        args = build_parser().parse_args(["migrate", *options])
        return Limits(**{name: getattr(args, name) for name in Limits.__dataclass_fields__})

    assert limits() == Limits()
    assert limits(
        "--max-replication-lag",
        "2.5",
        "--max-replication-lag-bytes",
        "off",
        "--no-wait-on-vacuum",
        "--max-lock-waiters",
        "3",
    ) == Limits(2.5, None, False, 3)
    assert limits("--max-replication-lag", "off", "--max-lock-waiters", "off") == Limits(None, 1 << 30, True, None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["migrate", "--max-lock-waiters", "-1"])


# on a real server


@pytest.fixture
def url(own_postgres: PostgresServer) -> str:
    return own_postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def runner_conn(url: str) -> Iterator[Connection]:
    """The connection the runner holds (Database.conn: autocommit), which the batch loop passes."""
    db = Database(parse_url(url), DEFAULT_HISTORY_TABLE)
    try:
        yield db.conn
    finally:
        db.close()


def sql(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def eventually(read: Callable[[], T], ok: Callable[[T], bool], timeout: float = 30.0) -> T:
    """Poll until ok(read()); fail with the last reading."""
    deadline = time.monotonic() + timeout
    while not ok(value := read()):
        assert time.monotonic() < deadline, f"still {value!r} after {timeout:g} s"
        time.sleep(0.1)
    return value


@contextmanager
def in_background(url: str, statement: str, *setup: str) -> Iterator[None]:
    """Run a statement on its own session in a thread; afterwards cancel it if it still runs."""
    conn = psycopg.connect(url, autocommit=True)
    for line in setup:
        conn.execute(line)
    pid = conn.info.backend_pid
    thread = threading.Thread(target=_swallow_cancel, args=(conn, statement), daemon=True)
    thread.start()
    try:
        yield
    finally:
        sql(url, f"SELECT pg_cancel_backend({pid})")
        thread.join(30)
        conn.close()
        assert not thread.is_alive()


def _swallow_cancel(conn: psycopg.Connection, statement: str) -> None:
    try:
        conn.execute(statement)
    except psycopg.errors.QueryCanceled:
        pass


def plain_role(url: str) -> tuple[str, str]:
    """A new role of no privileges (roles are per server): its name and its URL for `url`'s database."""
    role = f"plain_{uuid.uuid4().hex[:8]}"
    sql(url, f"CREATE ROLE {role} LOGIN PASSWORD 'pressure-test'")
    return role, make_url(url).set(username=role, password="pressure-test").render_as_string(hide_password=False)


def test_a_paused_standby_holds_batches_until_it_replays(
    url: str, runner_conn: Connection, standby: PostgresServer
) -> None:
    sql(url, "CREATE TABLE ticks (at timestamptz DEFAULT now())")
    by_time = Limits(max_replication_lag_s=0.5, max_replication_lag_bytes=None)
    by_bytes = Limits(max_replication_lag_s=None, max_replication_lag_bytes=64 << 10)
    assert eventually(lambda: wait_reason(runner_conn, "ticks", by_time), lambda r: r is None) is None

    sql(standby.url, "SELECT pg_wal_replay_pause()")
    stop = threading.Event()
    writer = threading.Thread(target=_tick, args=(url, stop), daemon=True)  # what a backfill does: write
    writer.start()
    try:
        reason = eventually(lambda: wait_reason(runner_conn, "ticks", by_time), lambda r: r is not None)
        assert reason is not None and reason.startswith("replication lag ")
        assert reason.endswith(" s on standby 'replica1' (limit 0.5 s)")
        assert float(reason.split()[2]) >= 0.5  # over the limit, printed to one decimal
        reason = eventually(lambda: wait_reason(runner_conn, "ticks", by_bytes), lambda r: r is not None)
        assert reason is not None and reason.endswith(" on standby 'replica1' (limit 64 KiB)")
        assert (
            wait_reason(runner_conn, "ticks", Limits(max_replication_lag_s=None, max_replication_lag_bytes=None))
            is None
        )
    finally:
        stop.set()
        writer.join(10)
        sql(standby.url, "SELECT pg_wal_replay_resume()")
    assert eventually(lambda: wait_reason(runner_conn, "ticks", by_time), lambda r: r is None) is None
    assert wait_reason(runner_conn, "ticks", by_bytes) is None


def test_a_role_without_pg_monitor_sees_no_lag_and_is_told(url: str, standby: PostgresServer) -> None:
    sql(url, "CREATE TABLE ticks (at timestamptz DEFAULT now())")
    role, plain = plain_role(url)
    sql(standby.url, "SELECT pg_wal_replay_pause()")
    try:
        sql(url, *["INSERT INTO ticks DEFAULT VALUES"] * 50)
        with closing(Database(parse_url(plain), DEFAULT_HISTORY_TABLE)) as db:
            pressure = read_pressure(db.conn, "ticks")
            assert (pressure.standbys, pressure.hidden_standbys) == ((), 1)
            assert decide(pressure, Limits(max_replication_lag_bytes=1)) is None
            assert blind_spots(pressure) == (
                "this role cannot see the replication lag of 1 standby: grant it pg_monitor to throttle on them"
            )
            sql(url, f"GRANT pg_monitor TO {role}")
            assert wait_reason(db.conn, "ticks", Limits(max_replication_lag_bytes=1)) is not None
    finally:
        sql(standby.url, "SELECT pg_wal_replay_resume()")


def _tick(url: str, stop: threading.Event) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.wait(0.05):
            conn.execute("INSERT INTO ticks SELECT now() FROM generate_series(1, 20)")


@pytest.mark.parametrize("part", ["table", "its TOAST table"])
def test_a_vacuum_on_the_table_holds_batches(url: str, runner_conn: Connection, part: str) -> None:
    sql(
        url,
        "CREATE SCHEMA shop",
        "CREATE TABLE shop.orders (id int, note text) WITH (autovacuum_enabled = off)",
        "ALTER TABLE shop.orders ALTER note SET STORAGE EXTERNAL",  # long notes go to TOAST uncompressed
        "INSERT INTO shop.orders SELECT i, repeat('x', 100) FROM generate_series(1, 20000) i",
        "INSERT INTO shop.orders SELECT i, repeat('x', 3000) FROM generate_series(1, 500) i",
    )
    relation = (
        "shop.orders"
        if part == "table"
        else scalar(url, "SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = 'shop.orders'::regclass")
    )
    # vacuum_cost_limit 1 makes VACUUM sleep 100 ms after every page: it runs for minutes, until cancelled
    with in_background(url, f"VACUUM {relation}", "SET vacuum_cost_delay = 100", "SET vacuum_cost_limit = 1"):
        reason = eventually(lambda: wait_reason(runner_conn, "shop.orders", Limits()), lambda r: r is not None)
        assert reason is not None and reason.startswith("VACUUM is running on shop.orders (")
        assert wait_reason(runner_conn, "shop.orders", Limits(wait_on_vacuum=False)) is None
        assert wait_reason(runner_conn, "orders", Limits()) is None  # not on the search_path: another table
    assert eventually(lambda: wait_reason(runner_conn, "shop.orders", Limits()), lambda r: r is None) is None


def scalar(url: str, statement: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute(statement).fetchone()
        assert row is not None
        return str(row[0])


def test_autovacuum_on_the_table_holds_batches_and_a_plain_role_is_told_it_cannot_see_it(
    url: str, runner_conn: Connection
) -> None:
    _, plain = plain_role(url)
    sql(url, "ALTER SYSTEM SET autovacuum_naptime = 1", "SELECT pg_reload_conf()")
    try:
        sql(
            url,
            # any dead row triggers it, and it then crawls (100 ms after every page)
            "CREATE TABLE orders (id int, note text) WITH (autovacuum_vacuum_threshold = 0, "
            "autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1)",
            "INSERT INTO orders SELECT i, repeat('x', 100) FROM generate_series(1, 20000) i",
            "DELETE FROM orders WHERE id % 2 = 0",
        )
        reason = eventually(lambda: wait_reason(runner_conn, "orders", Limits()), lambda r: r is not None, 60)
        assert reason is not None and reason.startswith("autovacuum is running on public.orders (")
        with closing(Database(parse_url(plain), DEFAULT_HISTORY_TABLE)) as db:
            pressure = read_pressure(db.conn, "orders")
            assert pressure.vacuum is None and pressure.hidden_vacuums >= 1  # others may vacuum catalogs
            assert decide(pressure, Limits()) is None
            assert "VACUUM" in (blind_spots(pressure) or "")
        # its lock conflicts with autovacuum's, which then gives way within deadlock_timeout
        sql(url, "ALTER TABLE orders SET (autovacuum_enabled = off)")
        assert eventually(lambda: wait_reason(runner_conn, "orders", Limits()), lambda r: r is None) is None
    finally:
        sql(url, "ALTER SYSTEM RESET autovacuum_naptime", "SELECT pg_reload_conf()")


def test_sessions_queued_for_a_lock_on_the_table_hold_batches(url: str, runner_conn: Connection) -> None:
    sql(url, 'CREATE TABLE "Orders" (id int)', "CREATE TABLE other (id int)")
    expected = '2 sessions wait for locks on public."Orders"'
    holder = psycopg.connect(url)
    try:
        holder.execute('LOCK TABLE "Orders" IN ACCESS EXCLUSIVE MODE')
        with in_background(url, 'SELECT count(*) FROM "Orders"'), in_background(url, 'INSERT INTO "Orders" VALUES (1)'):
            assert eventually(lambda: wait_reason(runner_conn, '"Orders"', Limits()), lambda r: r == expected)
            assert wait_reason(runner_conn, 'public."Orders"', Limits(max_lock_waiters=2)) is None
            assert wait_reason(runner_conn, "other", Limits()) is None
            holder.rollback()
            assert eventually(lambda: wait_reason(runner_conn, '"Orders"', Limits()), lambda r: r is None) is None
    finally:
        holder.close()


def test_a_table_that_does_not_exist_has_no_table_signals(runner_conn: Connection) -> None:
    assert read_pressure(runner_conn, "nowhere.nothing") == Pressure(table=None)


def test_it_refuses_to_read_inside_a_transaction(url: str, runner_conn: Connection) -> None:
    runner_conn.execute("BEGIN")
    with pytest.raises(ValueError, match="outside a transaction"):
        wait_reason(runner_conn, "t", Limits())
    runner_conn.execute("ROLLBACK")
    with psycopg.connect(url) as plain:  # not autocommit
        with pytest.raises(ValueError, match="autocommit"):
            wait_reason(Connection(plain, psycopg.Error), "t", Limits())


def test_sqlite_has_no_signals(tmp_path: Path) -> None:
    with closing(Database(parse_url(f"sqlite:///{tmp_path}/x.db"), DEFAULT_HISTORY_TABLE)) as db:
        assert wait_reason(db.conn, "t", Limits(max_replication_lag_s=0, max_lock_waiters=0)) is None

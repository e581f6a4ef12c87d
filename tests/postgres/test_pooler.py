"""Transaction-mode poolers: the decision (pure), and lockgate behind a real PgBouncer."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest

from lockgate.runner.database import advisory_ids, advisory_key
from lockgate.runner.pooler import holder_query, pooled_per_transaction, pooler_refusal, proven_direct
from tests.pgbouncer_support import pgbouncer, pgbouncer_binary
from tests.runner_support import history, lockgate, popen, query, write

T = TypeVar("T")
needs_pgbouncer = pytest.mark.skipif(
    pgbouncer_binary() is None, reason="pgbouncer is not installed (make postgres installs it)"
)


@pytest.mark.parametrize(
    ("samples", "pooled"),
    [
        ([[101, 101], [102, 102]], False),  # direct or session mode: one backend per connection
        ([[101, 102], [103, 103]], True),  # the lock connection moved between statements
        ([[101, 101], [101, 101]], True),  # two connections shared one backend
        ([[101, 101], [102, 101]], True),
        ([[101], [102, 103]], True),  # the other connection moved
        ([[], []], False),
    ],
)
def test_pooling_per_transaction_is_told_from_backend_pids(samples: list[list[int]], pooled: bool) -> None:
    assert pooled_per_transaction(samples) is pooled


@pytest.mark.parametrize(
    ("local", "seen", "direct"),
    [
        (("127.0.0.1", 50123), ("127.0.0.1", 50123), True),
        (("::ffff:10.0.0.7", 50123), ("10.0.0.7", 50123), True),  # one socket, written two ways
        (("fe80::1%eth0", 4000), ("fe80::1", 4000), True),
        (("127.0.0.1", 50123), ("127.0.0.1", 40999), False),  # a pooler's own socket to the server
        (("10.0.0.7", 50123), ("10.0.0.9", 50123), False),  # a proxy or NAT in between
        (None, (None, None), False),  # Unix socket: proves nothing
        (("127.0.0.1", 50123), (None, None), False),
    ],
)
def test_a_session_is_proven_direct_by_its_client_address_and_port(
    local: tuple[str, int] | None, seen: tuple[str | None, int | None], direct: bool
) -> None:
    assert proven_direct(local, seen) is direct


def test_the_refusal_names_the_fix() -> None:
    message = pooler_refusal([[7, 7], [7, 7]])
    assert "transaction mode" in message and "directly" in message and "pool_mode = session" in message
    assert "no lock is left" in message


def test_a_lock_no_runner_holds_is_named_with_the_query_that_frees_it(tmp_path: Path, database_url: str) -> None:
    """What a lock left in a pooled session by an older runner looks like, and its way out."""
    d = write(tmp_path / "m", {"V1__a.sql": "CREATE TABLE a (id int);"})
    key = advisory_key("lockgate_schema_history", "expand")
    with psycopg.connect(database_url, autocommit=True) as stale:
        stale.execute("SELECT pg_advisory_lock(%s)", (key,))
        refused = lockgate("migrate", "--dir", str(d), "--lock-wait", "0", url=database_url)
        assert refused.code == 3 and holder_query(*advisory_ids(key)) in refused.err, refused.err
        assert "lockgate-test-password" not in refused.out + refused.err
        assert query(database_url, holder_query(*advisory_ids(key))) == [(True,)]
        with pytest.raises(psycopg.OperationalError):
            stale.execute("SELECT 1")
    assert query(database_url, HELD_ADVISORY_LOCKS) == [(0,)]
    assert lockgate("migrate", "--dir", str(d), "--lock-wait", "0", url=database_url).code == 0


@needs_pgbouncer
def test_a_transaction_mode_pooler_is_refused_and_leaves_no_lock_behind(tmp_path: Path, database_url: str) -> None:
    d = write(tmp_path / "m", {"V1__a.sql": "CREATE TABLE a (id int);"})
    with pgbouncer(database_url, "transaction", pool_size=1) as pooled_url:
        result = lockgate("migrate", "--dir", str(d), "--json", url=pooled_url)
        assert result.code == 2, result.out + result.err
        message = result.json["message"]
        assert "pooler in transaction mode" in message and "pool_mode = session" in message
        assert "lockgate-test-password" not in result.out + result.err
        key = advisory_key("lockgate_schema_history", "expand")
        held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s"
        assert query(database_url, held, key & 0xFFFFFFFF) == [(0,)]
        marker = tmp_path / "ran"
        tool = lockgate("exec", "--", "touch", str(marker), url=pooled_url)
        assert tool.code == 2 and "pooler in transaction mode" in tool.err and not marker.exists()
    assert query(database_url, "SELECT to_regclass('a') IS NULL") == [(True,)]
    direct = lockgate("migrate", "--dir", str(d), "--lock-wait", "0", url=database_url)
    assert direct.code == 0, direct.err


@needs_pgbouncer
def test_behind_a_session_mode_pool_the_lock_lives_and_dies_with_the_runners_transaction(
    tmp_path: Path, database_url: str
) -> None:
    query(database_url, "CREATE TABLE sleep_for AS SELECT 30 AS s")
    d = write(tmp_path / "m", {"V1__slow.sql": "SELECT pg_sleep((SELECT s FROM sleep_for));"})
    with pgbouncer(database_url, "session", pool_size=5) as pooled_url:
        first = popen("migrate", "--dir", str(d), url=pooled_url)
        holders = wait_for(lambda: query(database_url, LOCK_HOLDERS))
        assert holders == [("idle in transaction", None)]  # no snapshot: vacuum and CIC need not wait
        direct = lockgate("migrate", "--dir", str(d), "--lock-wait", "0", url=database_url)
        assert direct.code == 3, direct.out + direct.err  # the transaction lock excludes like the session lock
        second = popen("migrate", "--dir", str(d), "--lock-wait", "60", url=pooled_url)  # polls in transactions
        wait_for(lambda: "waiting up to 60s" in (second.stderr.readline() if second.stderr else ""))
        query(database_url, "UPDATE sleep_for SET s = 0")
        first.kill()  # SIGKILL: PgBouncer closes the server connection of a client gone mid-transaction
        first.communicate(timeout=30)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 0, out + err
    assert [r[0] for r in history(database_url)] == ["1"]  # the killed run rolled back, the waiting one applied it
    assert query(database_url, HELD_ADVISORY_LOCKS) == [(0,)]


LOCK_HOLDERS = (
    "SELECT a.state, a.backend_xmin::text FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
    "WHERE l.locktype = 'advisory' AND l.granted"
)


def wait_for(probe: Callable[[], T], seconds: float = 15) -> T:
    deadline = time.monotonic() + seconds
    while not (value := probe()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return value


@needs_pgbouncer
def test_a_session_mode_pooler_works(tmp_path: Path, database_url: str) -> None:
    d = write(tmp_path / "m", {"V1__a.sql": "CREATE TABLE a (id int);", "V2__b.sql": "CREATE TABLE b (id int);"})
    with pgbouncer(database_url, "session", pool_size=5) as pooled_url:
        result = lockgate("migrate", "--dir", str(d), url=pooled_url)
    assert result.code == 0, result.out + result.err
    assert [r[0] for r in history(database_url)] == ["1", "2"]


@needs_pgbouncer
def test_under_pool_traffic_every_runner_is_refused_and_no_lock_is_left(tmp_path: Path, database_url: str) -> None:
    """Issue 21: with other clients using a transaction-mode pool, an unlock sent after the
    refusal reached another server session and the lock stayed in the pool."""
    d = write(tmp_path / "m", {"V1__a.sql": "CREATE TABLE a (id int);"})
    with pgbouncer(database_url, "transaction", pool_size=4) as pooled_url, pool_traffic(pooled_url, clients=3):
        runners = [popen("migrate", "--dir", str(d), "--lock-wait", "2", "--json", url=pooled_url) for _ in range(10)]
        results = [(*r.communicate(timeout=60), r.returncode) for r in runners]
        held = query(database_url, HELD_ADVISORY_LOCKS)
    assert [code for _, _, code in results] == [2] * 10, [out + err for out, err, _ in results]
    assert all("pooler in transaction mode" in json.loads(out)["message"] for out, _, _ in results)
    assert held == [(0,)]
    assert query(database_url, "SELECT to_regclass('a') IS NULL") == [(True,)]
    direct = lockgate("migrate", "--dir", str(d), "--lock-wait", "0", url=database_url)
    assert direct.code == 0, direct.err


HELD_ADVISORY_LOCKS = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"


@contextmanager
def pool_traffic(url: str, clients: int) -> Iterator[None]:
    """Other clients of the pool, each sending `select pg_sleep(0.02)` in a loop."""
    stop = threading.Event()

    def client() -> None:
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
            while not stop.is_set():
                conn.execute("select pg_sleep(0.02)")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join()

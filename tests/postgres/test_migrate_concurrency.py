"""Exactly once under races and crashes: many runners at once, a runner killed mid-migration."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.runner_support import history, lockgate, popen, query, write

RUNNERS = 8
MIGRATIONS = 15


def test_racing_runners_apply_each_migration_exactly_once(tmp_path: Path, database_url: str) -> None:
    files = {"V1__counter.sql": "CREATE TABLE applied (version int, at timestamptz DEFAULT clock_timestamp());"}
    files |= {
        f"V{i}__step.sql": f"INSERT INTO applied (version) VALUES ({i}); SELECT pg_sleep(0.02);"
        for i in range(2, MIGRATIONS + 1)
    }
    d = write(tmp_path / "m", files)
    runners = [
        popen("migrate", "--dir", str(d), "--json", "--lock-wait", "120", url=database_url) for _ in range(RUNNERS)
    ]
    results = [(r.wait(timeout=180), r.stdout.read()) for r in runners]
    assert [code for code, _ in results] == [0] * RUNNERS
    import json

    applied_counts = sorted(len(json.loads(out)["applied"]) for _, out in results)
    assert applied_counts == [0] * (RUNNERS - 1) + [
        MIGRATIONS
    ]  # one runner did everything, the rest found nothing to do
    assert query(database_url, "SELECT version, count(*) FROM applied GROUP BY version HAVING count(*) > 1") == []
    assert query(database_url, "SELECT count(*) FROM applied") == [(MIGRATIONS - 1,)]
    rows = history(database_url)
    assert [r[0] for r in rows] == [str(i) for i in range(1, MIGRATIONS + 1)]
    assert all(r[3] for r in rows)


def test_runner_killed_mid_migration_leaves_nothing_half_recorded(tmp_path: Path, database_url: str) -> None:
    d = write(
        tmp_path / "m",
        {
            "V1__config.sql": "CREATE TABLE sleep_config (seconds float); INSERT INTO sleep_config VALUES (60);",
            "V2__slow.sql": "CREATE TABLE half_done (id int);\nSELECT pg_sleep((SELECT seconds FROM sleep_config));",
        },
    )
    runner = popen("migrate", "--dir", str(d), url=database_url)
    _wait_for(
        lambda: (
            query(
                database_url,
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%%' AND application_name = 'lockgate'",
            )
            == [(1,)]
        )
    )
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    # The server notices the dead client, rolls back V2 and frees the advisory lock on its own.
    _wait_for(
        lambda: (
            query(database_url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lockgate'") == [(0,)]
        )
    )
    assert history(database_url) == [("1", "expand", "V1__config.sql", True)]
    assert query(database_url, "SELECT to_regclass('half_done') IS NULL") == [(True,)]
    query(database_url, "UPDATE sleep_config SET seconds = 0")
    again = lockgate("migrate", "--dir", str(d), "--lock-wait", "0", url=database_url)
    assert again.code == 0, again.err
    assert history(database_url) == [("1", "expand", "V1__config.sql", True), ("2", "expand", "V2__slow.sql", True)]


def _wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_waiting_runners_never_stall_a_concurrent_index_build(tmp_path: Path, database_url: str) -> None:
    """Runners waiting for the lock hold no snapshot, so the holder's CREATE INDEX CONCURRENTLY
    (which waits for every older snapshot) is not held up by them: all exit 0, the build runs once."""
    query(database_url, "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 200000) g")
    d = write(
        tmp_path / "m",
        {
            "V1__pause.sql": "SELECT pg_sleep(1.5);",  # long enough for the waiters to start waiting
            "V2__index.sql": "CREATE INDEX CONCURRENTLY big_v ON big (v);",
        },
    )
    holder = popen("migrate", "--dir", str(d), "--lock-timeout", "2000", "--lock-retries", "0", url=database_url)
    time.sleep(0.5)
    waiters = [popen("migrate", "--dir", str(d), "--lock-wait", "60", url=database_url) for _ in range(3)]
    codes = [p.wait(timeout=120) for p in (holder, *waiters)]
    assert codes == [0, 0, 0, 0], [p.stdout.read() + p.stderr.read() for p in (holder, *waiters)]
    assert query(database_url, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'big_v'::regclass") == [(True,)]
    assert [r[0] for r in history(database_url)] == ["1", "2"]

"""Transaction-mode poolers: the decision (pure), and lockgate behind a real PgBouncer."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.runner.lock import advisory_key
from lockgate.runner.pooler import pooled_per_transaction, pooler_refusal
from tests.pgbouncer_support import pgbouncer, pgbouncer_binary
from tests.runner_support import history, lockgate, query, write

needs_pgbouncer = pytest.mark.skipif(
    pgbouncer_binary() is None, reason="pgbouncer is not installed (make postgres installs it)"
)


@pytest.mark.parametrize(
    ("lock_pids", "other_pids", "pooled"),
    [
        ([101, 101], [102], False),  # direct or session mode: one backend per connection
        ([101, 102], [103], True),  # the lock connection moved between statements
        ([101, 101], [101], True),  # two connections shared one backend
        ([101, 102], [101], True),
    ],
)
def test_pooling_per_transaction_is_told_from_backend_pids(
    lock_pids: list[int], other_pids: list[int], pooled: bool
) -> None:
    assert pooled_per_transaction(lock_pids, other_pids) is pooled


def test_the_refusal_names_the_fix() -> None:
    message = pooler_refusal([7, 7], [7])
    assert "transaction mode" in message and "directly" in message and "pool_mode = session" in message


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
def test_a_session_mode_pooler_works(tmp_path: Path, database_url: str) -> None:
    d = write(tmp_path / "m", {"V1__a.sql": "CREATE TABLE a (id int);", "V2__b.sql": "CREATE TABLE b (id int);"})
    with pgbouncer(database_url, "session", pool_size=5) as pooled_url:
        result = lockgate("migrate", "--dir", str(d), url=pooled_url)
    assert result.code == 0, result.out + result.err
    assert [r[0] for r in history(database_url)] == ["1", "2"]

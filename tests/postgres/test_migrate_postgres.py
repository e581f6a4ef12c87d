"""`lockgate migrate` and friends against a real PostgreSQL server, through the real CLI."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lockgate.runner.database import advisory_key
from tests.runner_support import history, lockgate, query, write

BASIC = {
    "V1__create_users.sql": "CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL);",
    "V2__add_email.sql": "ALTER TABLE users ADD COLUMN email text;",
    "A2__backfill_email.sql": "UPDATE users SET email = name || '@example.com' WHERE email IS NULL;",
    "C2__drop_name_default.sql": "ALTER TABLE users ALTER COLUMN name DROP DEFAULT;",
    "R__user_view.sql": "CREATE OR REPLACE VIEW user_names AS SELECT id, name FROM users;",
}


def test_phases_apply_in_order_and_record_history(tmp_path: Path, database_url: str) -> None:
    d = write(tmp_path / "m", BASIC)
    first = lockgate("migrate", "--dir", str(d), url=database_url)
    assert first.code == 0, first.err
    assert "V1" in first.out and "V2" in first.out and "R__user_view.sql" in first.out
    assert lockgate("migrate", "--dir", str(d), "--phase", "background", url=database_url).code == 0
    assert lockgate("migrate", "--dir", str(d), "--phase", "contract", url=database_url).code == 0
    assert history(database_url) == [
        ("1", "expand", "V1__create_users.sql", True),
        ("2", "expand", "V2__add_email.sql", True),
        (None, "repeatable", "R__user_view.sql", True),
        ("2", "background", "A2__backfill_email.sql", True),
        ("2", "contract", "C2__drop_name_default.sql", True),
    ]
    row = query(
        database_url,
        "SELECT installed_by, installed_on IS NOT NULL, execution_ms >= 0, length(checksum) FROM lockgate_schema_history LIMIT 1",
    )[0]
    assert row == ("postgres", True, True, 64)
    again = lockgate("migrate", "--dir", str(d), "--json", url=database_url)
    assert again.code == 0 and again.json["applied"] == [] and again.json["pending"] == []


def test_json_summary_lists_applied_and_pending(tmp_path: Path, database_url: str) -> None:
    d = write(tmp_path / "m", BASIC)
    result = lockgate("migrate", "--dir", str(d), "--target", "1", "--json", url=database_url)
    assert result.code == 0
    doc = result.json
    assert [(a["version"], a["phase"], a["description"]) for a in doc["applied"]] == [
        ("1", "expand", "create users"),
        (None, "repeatable", "user view"),
    ]
    assert all(isinstance(a["ms"], int) for a in doc["applied"])
    assert doc["pending"] == [] and doc["error"] is None and doc["schema_version"] == "1"
    plan = lockgate("plan", "--dir", str(d), "--json", url=database_url)
    assert [p["script"] for p in plan.json["pending"]] == ["V2__add_email.sql"]


def test_failed_migration_rolls_back_and_reports_where(tmp_path: Path, database_url: str) -> None:
    d = write(
        tmp_path / "m",
        {
            "V1__ok.sql": "CREATE TABLE a (id int);",
            "V2__broken.sql": "CREATE TABLE b (id int);\n\nINSERT INTO b\n  SELECT * FROM missing_table;",
            "V3__never.sql": "CREATE TABLE c (id int);",
        },
    )
    result = lockgate("migrate", "--dir", str(d), "--json", url=database_url)
    assert result.code == 1
    error = result.json["error"]
    assert (error["version"], error["script"], error["sqlstate"], error["line"]) == ("2", "V2__broken.sql", "42P01", 4)
    assert "missing_table" in error["message"]
    assert [a["script"] for a in result.json["applied"]] == ["V1__ok.sql"]
    tables = {r[0] for r in query(database_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert "a" in tables and "b" not in tables and "c" not in tables
    assert history(database_url) == [("1", "expand", "V1__ok.sql", True)]


def test_single_transaction_is_all_or_nothing(tmp_path: Path, database_url: str) -> None:
    d = write(tmp_path / "m", {"V1__a.sql": "CREATE TABLE a (id int);", "V2__b.sql": "SELECT 1/0;"})
    result = lockgate("migrate", "--dir", str(d), "--single-transaction", url=database_url)
    assert result.code == 1 and "22012" in result.err and "all pending migrations were rolled back" in result.err
    assert query(
        database_url, "SELECT to_regclass('a') IS NULL, to_regclass('lockgate_schema_history') IS NOT NULL"
    ) == [(True, True)]
    assert history(database_url) == []


def test_single_transaction_refuses_statements_that_cannot_run_in_one(tmp_path: Path, database_url: str) -> None:
    d = write(
        tmp_path / "m",
        {"V1__a.sql": "CREATE TABLE a (id int);", "V2__idx.sql": "CREATE INDEX CONCURRENTLY i ON a (id);"},
    )
    result = lockgate("migrate", "--dir", str(d), "--single-transaction", url=database_url)
    assert result.code == 4 and "V2__idx.sql line 1" in result.err
    assert history(database_url) == []


def test_a_syntax_error_anywhere_applies_nothing(tmp_path: Path, database_url: str) -> None:
    d = write(
        tmp_path / "m", {"V1__a.sql": "CREATE TABLE a (id int);", "V2__typo.sql": "SELECT 1;\nCREAT TABLE b (id int);"}
    )
    result = lockgate("migrate", "--dir", str(d), "--json", url=database_url)
    assert result.code == 1
    assert (result.json["error"]["sqlstate"], result.json["error"]["line"], result.json["applied"]) == ("42601", 2, [])
    assert history(database_url) == []


def test_tricky_sql_runs_statement_by_statement(tmp_path: Path, database_url: str) -> None:
    from tests.unit.test_statements import TRICKY

    d = write(tmp_path / "m", {"V1__tricky.sql": TRICKY})
    result = lockgate("migrate", "--dir", str(d), url=database_url)
    assert result.code == 0, result.err
    assert query(database_url, "SELECT body, pct FROM t") == [("it's \n ; here", "é;ü")]
    assert query(database_url, "SELECT f()") == [(1,)]
    assert query(database_url, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_id'::regclass") == [(True,)]


def test_a_target_without_scripts_is_refused_not_called_done(tmp_path: Path, database_url: str) -> None:
    d = write(tmp_path / "m", {"V1__a.txt": "CREATE TABLE a (id int);"})  # not a migration file name
    result = lockgate("migrate", "--target", "1", "--dir", str(d), "--json", url=database_url)
    assert result.code == 4 and result.json["exit_code"] == 4 and result.json["applied"] == []
    [problem] = result.json["problems"]
    assert "no migration for version 1" in problem and "add V1__<description>.sql" in problem


def test_edited_script_is_refused_with_advice(tmp_path: Path, database_url: str) -> None:
    d = write(tmp_path / "m", {"V1__a.sql": "CREATE TABLE a (id int);"})
    assert lockgate("migrate", "--dir", str(d), url=database_url).code == 0
    write(d, {"V1__a.sql": "CREATE TABLE a (id bigint);", "V2__b.sql": "CREATE TABLE b (id int);"})
    result = lockgate("migrate", "--dir", str(d), url=database_url)
    assert result.code == 4
    assert "V1__a.sql was edited after it was applied" in result.err and "new migration" in result.err
    assert query(database_url, "SELECT to_regclass('b') IS NULL") == [(True,)]


def test_out_of_order_and_contract_before_expand_are_refused(tmp_path: Path, database_url: str) -> None:
    d = write(tmp_path / "m", {"V1__a.sql": "SELECT 1;", "V3__c.sql": "SELECT 3;"})
    assert lockgate("migrate", "--dir", str(d), url=database_url).code == 0
    write(d, {"V2__late.sql": "CREATE TABLE late (id int);", "C4__drop.sql": "SELECT 4;"})
    refused = lockgate("migrate", "--dir", str(d), url=database_url)
    assert refused.code == 4 and "V2__late.sql is older than the applied V3" in refused.err
    contract = lockgate("migrate", "--dir", str(d), "--phase", "contract", url=database_url)
    assert contract.code == 4 and "C4__drop.sql cannot run before V2__late.sql" in contract.err
    assert lockgate("migrate", "--dir", str(d), "--out-of-order", url=database_url).code == 0
    assert ("2", "expand", "V2__late.sql", True) in history(database_url)


def test_missing_applied_script_is_refused(tmp_path: Path, database_url: str) -> None:
    d = write(tmp_path / "m", {"V1__a.sql": "SELECT 1;", "V2__b.sql": "SELECT 2;", "V3__c.sql": "SELECT 3;"})
    assert lockgate("migrate", "--dir", str(d), url=database_url).code == 0
    (d / "V2__b.sql").unlink()
    result = lockgate("migrate", "--dir", str(d), url=database_url)
    assert result.code == 4 and "V2__b.sql (expand 2) is recorded as applied but is missing" in result.err


def test_bad_file_name_is_refused_naming_the_file(tmp_path: Path, database_url: str) -> None:
    d = write(tmp_path / "m", {"V1__a.sql": "SELECT 1;", "V2_missing_underscore.sql": "SELECT 2;"})
    result = lockgate("migrate", "--dir", str(d), url=database_url)
    assert result.code == 4 and "V2_missing_underscore.sql" in result.err
    assert query(database_url, "SELECT to_regclass('lockgate_schema_history') IS NULL") == [(True,)]


def test_usage_errors_exit_2_without_touching_anything(tmp_path: Path, database_url: str) -> None:
    d = write(tmp_path / "m", {"V1__a.sql": "SELECT 1;"})
    no_url = lockgate("migrate", "--dir", str(d))
    assert no_url.code == 2 and "LOCKGATE_DATABASE_URL" in no_url.err
    no_dir = lockgate("migrate", url=database_url)
    assert no_dir.code == 2 and "LOCKGATE_MIGRATIONS_DIR" in no_dir.err
    assert lockgate("migrate", "--dir", str(d), "--phase", "sideways", url=database_url).code == 2
    assert lockgate("migrate", "--dir", str(d), "--target", "v2", url=database_url).code == 2
    assert lockgate("migrate", "--dir", str(d), url="mysql://u:p@h/db").code == 2
    assert query(database_url, "SELECT to_regclass('lockgate_schema_history') IS NULL") == [(True,)]


def test_secrets_never_appear_in_output(tmp_path: Path, postgres, database_url: str) -> None:
    d = write(tmp_path / "m", {"V1__a.sql": "SELECT 1;"})
    wrong = database_url.replace(postgres.password, "Sup3r-Secret-Pw")
    summary = tmp_path / "summary.json"
    for args in (
        ("migrate", "--dir", str(d), "--summary-file", str(summary)),
        ("migrate", "--dir", str(d), "--json"),
        ("info", "--dir", str(d)),
    ):
        result = lockgate(*args, url=wrong)
        assert result.code == 2, result.err
        assert "cannot connect" in result.err + result.out
        assert "Sup3r-Secret-Pw" not in result.out + result.err
    assert "Sup3r-Secret-Pw" not in summary.read_text()
    argv = lockgate("migrate", "--dir", str(d), "--database-url", wrong.replace("127.0.0.1", "nonexistent.invalid"))
    assert argv.code == 2 and "Sup3r-Secret-Pw" not in argv.out + argv.err
    garbage = lockgate("migrate", "--dir", str(d), url="postgresql://user:Sup3r-Secret-Pw@[bad")
    assert garbage.code == 2 and "Sup3r-Secret-Pw" not in garbage.out + garbage.err


def test_lock_held_longer_than_lock_wait_exits_3(tmp_path: Path, database_url: str) -> None:
    d = write(tmp_path / "m", {"V1__a.sql": "CREATE TABLE a (id int);"})
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (advisory_key("lockgate_schema_history", "expand"),))
        started = time.monotonic()
        result = lockgate("migrate", "--dir", str(d), "--lock-wait", "1", url=database_url)
        waited = time.monotonic() - started
    assert result.code == 3 and "held the migration lock for more than 1s" in result.err
    assert "waiting up to 1s for the migration lock, held by pid" in result.out
    assert 1 <= waited < 20
    assert query(database_url, "SELECT to_regclass('a') IS NULL") == [(True,)]


def test_a_long_background_run_does_not_block_the_next_expand(tmp_path: Path, database_url: str) -> None:
    d = write(
        tmp_path / "m",
        {
            "V1__a.sql": "CREATE TABLE a (id int);",
            "A1__slow.sql": "SELECT pg_sleep(10);",
            "V2__b.sql": "CREATE TABLE b (id int);",
        },
    )
    assert lockgate("migrate", "--dir", str(d), "--target", "1", url=database_url).code == 0
    from tests.runner_support import popen

    background = popen("migrate", "--dir", str(d), "--phase", "background", url=database_url)
    time.sleep(1)
    expand = lockgate("migrate", "--dir", str(d), "--lock-wait", "0", url=database_url)
    assert expand.code == 0, expand.err
    assert background.poll() is None  # expand finished while background still ran
    assert background.wait(timeout=30) == 0
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (advisory_key("lockgate_schema_history", "background"),))
        assert (
            lockgate("migrate", "--dir", str(d), "--phase", "background", "--lock-wait", "0", url=database_url).code
            == 3
        )


def test_lock_timeout_retries_then_gives_way_to_traffic(tmp_path: Path, database_url: str) -> None:
    query(database_url, "CREATE TABLE busy (id int)")
    d = write(tmp_path / "m", {"V1__alter_busy.sql": "ALTER TABLE busy ADD COLUMN x int;"})
    with psycopg.connect(database_url) as holder:
        holder.execute("LOCK TABLE busy IN ACCESS SHARE MODE")  # a long-running reader
        result = lockgate(
            "migrate", "--dir", str(d), "--lock-timeout", "200", "--lock-retries", "2", "--json", url=database_url
        )
        assert query(
            database_url, "SELECT count(*) FROM pg_locks WHERE relation = 'busy'::regclass AND NOT granted"
        ) == [(0,)]
    assert result.code == 1
    assert result.json["error"]["sqlstate"] == "55P03"
    assert result.err.count("lock not granted within 200 ms") == 2
    assert history(database_url) == []


def release_after_a_lock_wait(holder: psycopg.Connection[Any], url: str, after: float) -> None:
    """Close `holder` `after` seconds after another session is first seen waiting for a lock."""
    deadline = time.monotonic() + 60
    waiting = "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    while time.monotonic() < deadline and not query(url, waiting):
        time.sleep(0.02)
    time.sleep(after)
    holder.close()


def test_lock_timeout_retry_succeeds_once_the_lock_is_released(tmp_path: Path, database_url: str) -> None:
    query(database_url, "CREATE TABLE busy (id int)")
    d = write(tmp_path / "m", {"V1__alter_busy.sql": "ALTER TABLE busy ADD COLUMN x int;"})
    holder = psycopg.connect(database_url)
    holder.execute("LOCK TABLE busy IN ACCESS SHARE MODE")
    # Released only once the runner's ALTER has waited out one lock_timeout: a slow start cannot skip the retry.
    threading.Thread(target=release_after_a_lock_wait, args=(holder, database_url, 0.5), daemon=True).start()
    result = lockgate("migrate", "--dir", str(d), "--lock-timeout", "300", "--lock-retries", "6", url=database_url)
    assert result.code == 0, result.err
    assert "retrying" in result.out
    assert history(database_url) == [("1", "expand", "V1__alter_busy.sql", True)]


def test_a_long_migration_reports_that_it_is_still_running(tmp_path: Path, database_url: str) -> None:
    d = write(tmp_path / "m", {"V1__slow_backfill.sql": "SELECT pg_sleep(11);"})
    result = lockgate("migrate", "--dir", str(d), url=database_url)
    assert result.code == 0
    lines = result.out.splitlines()
    notice = next(i for i, line in enumerate(lines) if "slow backfill" in line and "still running after 10 s" in line)
    done = next(i for i, line in enumerate(lines) if "slow backfill" in line and line.rstrip().endswith(" ms"))
    assert notice < done


def test_statement_timeout_bounds_each_statement(tmp_path: Path, database_url: str) -> None:
    d = write(tmp_path / "m", {"V1__slow.sql": "SELECT pg_sleep(10);"})
    started = time.monotonic()
    result = lockgate("migrate", "--dir", str(d), "--statement-timeout", "0.5", "--json", url=database_url)
    assert result.code == 1 and result.json["error"]["sqlstate"] == "57014"
    assert time.monotonic() - started < 8


def test_failed_concurrent_index_leaves_no_invalid_index(tmp_path: Path, database_url: str) -> None:
    query(database_url, "CREATE TABLE dup (v int); INSERT INTO dup VALUES (1), (1)")
    d = write(tmp_path / "m", {"V1__unique.sql": "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS dup_v ON dup (v);"})
    result = lockgate("migrate", "--dir", str(d), "--json", url=database_url)
    assert result.code == 1 and result.json["error"]["sqlstate"] == "23505"
    assert query(database_url, "SELECT count(*) FROM pg_index WHERE indrelid = 'dup'::regclass") == [(0,)]
    assert history(database_url) == []
    query(database_url, "DELETE FROM dup WHERE ctid = (SELECT max(ctid) FROM dup)")
    assert lockgate("migrate", "--dir", str(d), url=database_url).code == 0
    assert query(database_url, "SELECT indisvalid FROM pg_index WHERE indrelid = 'dup'::regclass") == [(True,)]


def test_invalid_index_left_by_a_killed_run_is_rebuilt(tmp_path: Path, database_url: str) -> None:
    query(database_url, "CREATE TABLE dup (v int); INSERT INTO dup VALUES (1), (1)")
    with pytest.raises(psycopg.errors.UniqueViolation):  # what a runner killed mid-build leaves: an INVALID index
        query(database_url, "CREATE UNIQUE INDEX CONCURRENTLY dup_v ON dup (v)")
    query(database_url, "DELETE FROM dup WHERE ctid = (SELECT max(ctid) FROM dup)")
    d = write(tmp_path / "m", {"V1__unique.sql": "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS dup_v ON dup (v);"})
    result = lockgate("migrate", "--dir", str(d), url=database_url)
    assert result.code == 0 and "dropping INVALID index public.dup_v" in result.out
    assert query(database_url, "SELECT indisvalid FROM pg_index WHERE indrelid = 'dup'::regclass") == [(True,)]


def test_partial_failure_outside_a_transaction_is_recorded_and_blocks_until_repair(
    tmp_path: Path, database_url: str
) -> None:
    query(database_url, "CREATE TABLE t (v int)")
    d = write(
        tmp_path / "m", {"V1__two_steps.sql": "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_v ON t (v);\nSELECT 1/0;"}
    )
    first = lockgate("migrate", "--dir", str(d), url=database_url)
    assert first.code == 1 and "stay applied (recorded as failed)" in first.err
    assert history(database_url) == [("1", "expand", "V1__two_steps.sql", False)]
    blocked = lockgate("migrate", "--dir", str(d), url=database_url)
    assert blocked.code == 4 and "failed part-way" in blocked.err and "lockgate repair" in blocked.err
    write(d, {"V1__two_steps.sql": "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_v ON t (v);\nSELECT 1;"})
    assert lockgate("repair", url=database_url).code == 0
    assert lockgate("migrate", "--dir", str(d), url=database_url).code == 0
    assert history(database_url) == [("1", "expand", "V1__two_steps.sql", True)]


def test_plan_and_info_change_nothing(tmp_path: Path, database_url: str) -> None:
    d = write(tmp_path / "m", BASIC)
    plan = lockgate("plan", "--dir", str(d), url=database_url)
    assert plan.code == 0 and "would apply V1__create_users.sql" in plan.out
    info = lockgate("info", "--dir", str(d), "--json", url=database_url)
    assert info.code == 0 and [e["state"] for e in info.json["expand"]] == ["pending", "pending"]
    assert query(database_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]


def test_undo_runs_the_undo_scripts_and_allows_reapplying(tmp_path: Path, database_url: str) -> None:
    d = write(
        tmp_path / "m",
        {
            "V1__a.sql": "CREATE TABLE a (id int);",
            "V2__b.sql": "ALTER TABLE a ADD COLUMN b int;",
            "U2__b.sql": "ALTER TABLE a DROP COLUMN b;",
        },
    )
    assert lockgate("migrate", "--dir", str(d), url=database_url).code == 0
    undo = lockgate("undo", "--dir", str(d), "--to", "1", url=database_url)
    assert undo.code == 0, undo.err
    assert query(
        database_url, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'a' AND column_name = 'b'"
    ) == [(0,)]
    assert lockgate("undo", "--dir", str(d), "--to", "0", url=database_url).code == 4  # V1 has no U1
    assert lockgate("migrate", "--dir", str(d), url=database_url).code == 0
    assert [r[1] for r in history(database_url)] == ["expand", "expand", "undo", "expand"]


def test_baseline_skips_what_the_schema_already_has(tmp_path: Path, database_url: str) -> None:
    query(database_url, "CREATE TABLE legacy (id int)")
    d = write(
        tmp_path / "m",
        {"V1__legacy.sql": "CREATE TABLE legacy (id int);", "V2__new.sql": "CREATE TABLE fresh (id int);"},
    )
    assert lockgate("baseline", "--version", "1", url=database_url).code == 0
    assert lockgate("migrate", "--dir", str(d), url=database_url).code == 0
    assert [r[2] for r in history(database_url)] == ["<< baseline >>", "V2__new.sql"]
    assert lockgate("baseline", "--version", "2", url=database_url).code == 4


def test_custom_history_table_in_its_own_schema(tmp_path: Path, database_url: str) -> None:
    query(database_url, "CREATE SCHEMA ops")
    d = write(tmp_path / "m", {"V1__a.sql": "CREATE TABLE a (id int);"})
    assert lockgate("migrate", "--dir", str(d), "--history-table", "ops.schema_history", url=database_url).code == 0
    assert history(database_url, "ops.schema_history") == [("1", "expand", "V1__a.sql", True)]
    assert lockgate("migrate", "--dir", str(d), "--history-table", "ops.bad-name", url=database_url).code == 2


def test_summary_file_is_a_compact_termination_message(tmp_path: Path, database_url: str) -> None:
    d = write(
        tmp_path / "m",
        {f"V{i}__step_with_a_rather_long_description_{i}.sql": f"CREATE TABLE t{i} (id int);" for i in range(1, 301)},
    )
    summary = tmp_path / "termination-log"
    result = lockgate("migrate", "--dir", str(d), "--summary-file", str(summary), url=database_url)
    assert result.code == 0
    import json

    text = summary.read_text()
    doc = json.loads(text)
    assert len(text.encode()) < 4096
    assert doc["applied_count"] == 300 and doc["schema_version"] == "300" and doc["exit_code"] == 0
    assert doc["applied"][-1][0] == "300"


def test_each_migration_starts_from_the_same_session_state(tmp_path: Path, database_url: str) -> None:
    """What a script SETs (search_path, lock_timeout = 0) does not leak into the next one."""
    d = write(
        tmp_path / "m",
        {
            "V1__elsewhere.sql": "CREATE SCHEMA other; SET search_path = other, public; SET lock_timeout = 0;",
            "V2__settings.sql": "CREATE TABLE settings AS SELECT current_setting('search_path') AS search_path,"
            " current_setting('lock_timeout') AS lock_timeout;",
        },
    )
    result = lockgate("migrate", "--dir", str(d), "--lock-timeout", "1500", url=database_url)
    assert result.code == 0, result.err
    assert query(database_url, "SELECT table_schema FROM information_schema.tables WHERE table_name = 'settings'") == [
        ("public",)
    ]
    assert query(database_url, "SELECT * FROM public.settings") == [('"$user", public', "1500ms")]


def test_a_script_that_empties_the_search_path_is_recorded_and_the_next_one_runs(
    tmp_path: Path, database_url: str
) -> None:
    """pg_dump output starts by emptying the search_path: the history row of that very script
    (same transaction) still lands in the schema-qualified history table."""
    d = write(
        tmp_path / "m",
        {
            "V1__dump.sql": "SELECT pg_catalog.set_config('search_path', '', false);\n"
            "CREATE TABLE public.dumped (id integer);",
            "V2__next.sql": "CREATE TABLE after_dump (id integer);",
        },
    )
    result = lockgate("migrate", "--dir", str(d), "--json", url=database_url)
    assert result.code == 0, result.err
    assert result.json["schema_version"] == "2" and len(result.json["applied"]) == 2
    assert history(database_url) == [("1", "expand", "V1__dump.sql", True), ("2", "expand", "V2__next.sql", True)]
    assert query(database_url, "SELECT to_regclass('public.after_dump') IS NOT NULL") == [(True,)]
    together = lockgate("migrate", "--dir", str(d), "--single-transaction", url=database_url)
    assert together.code == 0 and "nothing to do" in together.out


def test_history_table_in_a_missing_schema_is_a_one_line_usage_error(tmp_path: Path, database_url: str) -> None:
    d = write(tmp_path / "m", {"V1__a.sql": "CREATE TABLE a (id int);"})
    result = lockgate("migrate", "--dir", str(d), "--history-table", "nosuch.history", "--json", url=database_url)
    assert result.code == 2
    assert result.json["message"] == 'schema "nosuch" does not exist: create it or set --history-table'
    assert "Traceback" not in result.err
    nowhere = lockgate("migrate", "--dir", str(d), url=database_url + "?options=-csearch_path%3Dnowhere")
    assert nowhere.code == 2 and "search_path names no existing schema" in nowhere.err, nowhere.err
    assert query(database_url, "SELECT to_regclass('a') IS NULL") == [(True,)]


def test_an_unexpected_database_error_ends_in_one_line_and_the_json_summary(tmp_path: Path, database_url: str) -> None:
    query(database_url, "CREATE TABLE lockgate_schema_history (something_else text)")  # not lockgate's shape
    d = write(tmp_path / "m", {"V1__a.sql": "CREATE TABLE a (id int);"})
    summary = tmp_path / "summary.json"
    result = lockgate("migrate", "--dir", str(d), "--json", "--summary-file", str(summary), url=database_url)
    assert result.code == 1 and "Traceback" not in result.err, result.err
    assert result.json["message"].startswith("database error [42703]: column"), result.json
    assert "postgres:" not in result.out + result.err + summary.read_text()
    info = lockgate("info", "--dir", str(d), url=database_url)
    assert info.code == 1 and info.err.count("\n") == 1 and "database error [42703]" in info.err, info.err


# CREATE TABLE as SQLAlchemy emitted it (lockgate 0.1.0 and before) for --history-table AppHistory:
# a mixed-case name it quoted. Tables in use keep it.
SQLALCHEMY_HISTORY = """
CREATE TABLE public."AppHistory" (
    installed_rank SERIAL NOT NULL, version TEXT, phase TEXT NOT NULL, description TEXT NOT NULL,
    script TEXT NOT NULL, checksum TEXT, installed_by TEXT NOT NULL,
    installed_on TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, execution_ms INTEGER NOT NULL,
    success BOOLEAN NOT NULL, PRIMARY KEY (installed_rank)
)"""


def test_a_history_table_sqlalchemy_created_is_read_and_written_as_before(tmp_path: Path, database_url: str) -> None:
    query(database_url, SQLALCHEMY_HISTORY)
    d = write(tmp_path / "m", {"V1__users.sql": "CREATE TABLE users (id integer PRIMARY KEY);"})
    table = ("--history-table", "AppHistory")
    assert lockgate("migrate", "--dir", str(d), *table, url=database_url).code == 0
    assert lockgate("exec", *table, "--version-label", "1", "--", "true", url=database_url).code == 0
    again = lockgate("migrate", "--dir", str(d), *table, "--json", url=database_url)
    assert again.code == 0 and again.json["applied"] == [], again.out
    applied = lockgate("info", "--dir", str(d), *table, "--json", url=database_url).json["expand"][0]
    assert applied["state"] == "applied" and applied["installed_by"] == "postgres"
    assert history(database_url, 'public."AppHistory"') == [
        ("1", "expand", "V1__users.sql", True),
        (None, "exec", "true", True),
    ]
    assert query(database_url, "SELECT count(*) FROM pg_class WHERE relname ILIKE 'apphistory'") == [
        (1,)
    ]  # no second table

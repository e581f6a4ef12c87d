"""Batched background scripts: the pure decisions, then whole walks on a real PostgreSQL."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lockgate.runner.batched import header as batch
from lockgate.runner.batched.header import BatchScriptError, Header, Walk
from lockgate.runner.lint import lint_script
from lockgate.runner.scripts import Script, checksum, parse_name
from lockgate.shared.progress import last_progress
from tests.runner_support import history, lockgate, popen, query, write

BACKFILL = """-- lockgate:batch table=customers key=id size=1000
UPDATE customers SET email = lower(full_name) || '@example.com', touched = touched + 1
 WHERE id >= :start AND id < :end AND email IS NULL;
"""


def script(name: str, sql: str) -> Script:
    kind, version, description = parse_name(name)
    return Script(kind, version, description, name, sql, checksum(sql))


# the header and the statement (pure)


def test_header_with_every_option() -> None:
    sql = "-- a comment\n-- lockgate:batch table=app.orders key=created_at size=500 pause=50ms target=1s max_rows_per_second=2000\nDELETE FROM app.orders WHERE created_at >= :start AND created_at < :end;"
    parsed = batch.parse(script("A1__purge.sql", sql))
    assert parsed.header == Header("app.orders", "created_at", 500, 0.05, 1.0, 2000.0, line=2)
    assert parsed.header.bounds == (50, 50_000)
    assert parsed.statement.line == 3 and parsed.statement.sql == sql


def test_mixed_case_names_are_quoted_as_in_sql() -> None:
    sql = '-- lockgate:batch table=app."Orders" key="CreatedAt" size=10\nDELETE FROM app."Orders" WHERE "CreatedAt" >= :start AND "CreatedAt" < :end;'
    header = batch.parse(script("A1__x.sql", sql)).header
    assert (header.table, header.key, header.key_name) == ('app."Orders"', '"CreatedAt"', "CreatedAt")
    assert batch.parse(script("A1__x.sql", BACKFILL.replace("key=id", "key=ID"))).header.key_name == "id"


def test_defaults_target_a_short_batch() -> None:
    header = batch.parse(script("A1__x.sql", BACKFILL)).header
    assert (header.pause, header.target, header.max_rows_per_second) == (0.0, 0.15, None)


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("table=t key=id", "line 1: the batch header needs size="),
        ("table=t key=id size=10 colour=red", "line 1: 'colour=red' in the batch header: use key=value with the keys"),
        ("table=t key=id size=10 size=20", "key 'size' given twice"),
        ("table=t key=id size=0", "size='0' must be a number from 1 to"),
        ("table=t key=id size=ten", "size='ten' must be a number"),
        ("table=t key=id size=10 pause=5", "pause='5' must be a duration such as 50ms or 2s"),
        ("table=t key=id size=10 target=0ms", "target='0ms' must be a duration"),
        ("table=t;drop key=id size=10", "table='t;drop' is not [schema.]table"),
        ("table=t key=a.b size=10", "key='a.b' is not a column name"),
        ("table=t key=id size=10 max_rows_per_second=-1", "max_rows_per_second='-1' must be a number"),
    ],
)
def test_bad_headers_are_refused_naming_file_line_and_key(header: str, says: str) -> None:
    sql = f"-- lockgate:batch {header}\nUPDATE t SET a = 1 WHERE id >= :start AND id < :end;"
    with pytest.raises(BatchScriptError) as refused:
        batch.parse(script("A1__x.sql", sql))
    assert str(refused.value).startswith("A1__x.sql line 1: ") and says in str(refused.value)


@pytest.mark.parametrize(
    ("statement", "says"),
    [
        ("UPDATE t SET a = 1 WHERE id >= :start;", "line 2: the statement must use both :start and :end"),
        ("UPDATE t SET a = ':start' WHERE id >= :start AND b = ':end';", "must use both :start and :end"),
        (
            "UPDATE t SET a = 1 WHERE id >= :start AND id < :end;\nUPDATE t SET b = 1;",
            "line 1: a batched script holds exactly one statement, this one has 2",
        ),
        ("SELECT * FROM t WHERE id >= :start AND id < :end;", "must be an UPDATE, DELETE or INSERT ... SELECT"),
        ("INSERT INTO t VALUES (:start, :end);", "must be an UPDATE, DELETE or INSERT ... SELECT"),
        ("UPDATE t SET a = 1 WHERE id BETWEEN :start AND :end;", "use :end only as the range's upper bound, id <"),
        ("UPDATE t SET a = 1 WHERE id >= :start AND id <= :end - 1;", "use :end only as the range's upper bound"),
        ("UPDATE t SET a = :end WHERE id >= :start AND id < :end;", "use :end only as the range's upper bound"),
    ],
)
def test_bad_statements_are_refused(statement: str, says: str) -> None:
    sql = f"-- lockgate:batch table=t key=id size=10\n{statement}"
    with pytest.raises(BatchScriptError, match=r"^A1__x\.sql line \d+: ") as refused:
        batch.parse(script("A1__x.sql", sql))
    assert says in str(refused.value)


def test_header_after_the_statement_is_refused() -> None:
    sql = "UPDATE t SET a = 1 WHERE id >= :start AND id < :end;\n-- lockgate:batch table=t key=id size=10\n"
    with pytest.raises(BatchScriptError, match="line 2: put the lockgate:batch header before the statement"):
        batch.parse(script("A1__x.sql", sql))


def test_placeholders_become_driver_parameters_outside_strings_and_comments() -> None:
    sql = "-- lockgate:batch table=t key=id size=10\nUPDATE t SET a = a || '%:start', b = x::text -- :end\n WHERE id >= :start AND id < :end;"
    statement = batch.parse(script("A1__x.sql", sql)).statement
    assert batch.driver_sql(statement) == (
        "-- lockgate:batch table=t key=id size=10\nUPDATE t SET a = a || '%%:start', b = x::text -- :end\n"
        " WHERE id >= %(start)s AND id < %(end)s;"
    )
    assert batch.parseable("WHERE id >= :start AND id < :end") == "WHERE id >= $1 AND id < $2"


def test_the_last_range_is_closed_on_the_greatest_key() -> None:
    sql = "-- lockgate:batch table=t key=id size=10\nUPDATE t SET a = '< :end' WHERE id >= :start AND id<:end::bigint;"
    statement = batch.parse(script("A1__x.sql", sql)).statement
    assert batch.driver_sql(statement).endswith("SET a = '< :end' WHERE id >= %(start)s AND id<%(end)s::bigint;")
    closed = batch.driver_sql(statement, last=True)
    assert closed.endswith("SET a = '< :end' WHERE id >= %(start)s AND id<=%(end)s::bigint;")
    reversed_sql = "-- lockgate:batch table=t key=id size=10\nDELETE FROM t WHERE :start <= id AND :end > id;"
    reversed_statement = batch.parse(script("A1__x.sql", reversed_sql)).statement
    assert batch.driver_sql(reversed_statement, last=True).endswith("WHERE %(start)s <= id AND %(end)s >= id;")


def test_only_background_scripts_with_the_header_are_batched() -> None:
    assert batch.is_batched(script("A1__x.sql", BACKFILL))
    assert not batch.is_batched(script("V1__x.sql", BACKFILL))
    assert not batch.is_batched(script("A1__x.sql", "UPDATE t SET a = 1; -- no lockgate:batch here"))


# the walk's decisions (pure)

HEADER = Header("t", "id", 1000, target=0.1)


@pytest.mark.parametrize(
    ("size", "ms", "expected"),
    [(1000, 100, 1000), (1000, 50, 2000), (1000, 10, 2000), (1000, 400, 500), (1000, 125, 800), (150, 10_000, 100)],
)
def test_batch_size_moves_toward_the_target_by_at_most_a_factor_two(size: int, ms: int, expected: int) -> None:
    assert batch.next_size(size, ms, HEADER) == expected


def test_batch_size_stays_within_bounds() -> None:
    assert batch.next_size(100_000, 1, HEADER) == 100_000
    assert batch.next_size(100, 100_000, HEADER) == 100


def test_rest_between_batches_holds_the_pause_and_the_row_rate() -> None:
    assert batch.rest_after(1000, 100, HEADER) == 0.0
    assert batch.rest_after(1000, 100, Header("t", "id", 1000, pause=0.05)) == 0.05
    limited = Header("t", "id", 1000, pause=0.05, max_rows_per_second=2000)
    assert batch.rest_after(1000, 100, limited) == pytest.approx(0.4)
    assert batch.rest_after(10, 100, limited) == 0.05


def test_resume_after_the_last_committed_batch_or_refuse_an_edited_script() -> None:
    s = script("A1__x.sql", BACKFILL)
    header = batch.parse(s).header
    assert batch.resume(None, s, header, "p") == Walk("A1__x.sql", s.checksum, 1000)
    saved = Walk("A1__x.sql", s.checksum, 4000, last_key="5001", rows=5000, batches=3, state="paused")
    assert batch.resume(saved, s, header, "p") == Walk(
        "A1__x.sql", s.checksum, 4000, last_key="5001", rows=5000, batches=3
    )
    finished = Walk("A1__x.sql", s.checksum, 4000, last_key="9", batches=9, state="done", done=True)
    assert batch.resume(finished, s, header, "p").batches == 0  # undone and run again: a new walk
    with pytest.raises(BatchScriptError, match="changed while its batched walk was in progress .3 batches"):
        batch.resume(Walk("A1__x.sql", "other", 1000, batches=3), s, header, "lockgate_batch_progress")


def test_after_batch_adds_up_and_the_view_estimates_what_is_left() -> None:
    walk = Walk("A1__x.sql", "c", 1000, total_estimate=10_000, state="waiting")
    walk = batch.after_batch(walk, 1000, 900, 100, "1001", False, HEADER)
    walk = batch.after_batch(walk, 1000, 1000, 100, "2001", False, HEADER)
    assert (walk.last_key, walk.rows, walk.scanned, walk.batches, walk.active_ms) == ("2001", 1900, 2000, 2, 200)
    view = batch.view(walk)
    assert (view["rate_rows_per_s"], view["percent"], view["eta_s"], view["state"]) == (9500.0, 20.0, 1, "running")
    assert "2 batches, 1,900 rows (20%), 9,500 rows/s" in batch.describe(walk)
    done = batch.view(batch.after_batch(walk, 10, 10, 1, "beyond", True, HEADER))
    assert (done["state"], done["percent"], done["eta_s"]) == ("done", 100.0, 0)
    assert batch.view(Walk("A1__x.sql", "c", 1000))["eta_s"] is None  # nothing known yet


# lint


def test_lint_flags_an_unbatched_backfill_with_the_header_as_advice() -> None:
    def rules(name: str, sql: str) -> list[tuple[int | None, str]]:
        return [(f.line, f.rule) for f in lint_script(script(name, sql))]

    assert rules("A1__x.sql", "SELECT 1;\nUPDATE users SET email = name WHERE email IS NULL;") == [
        (2, "unbatched-write")
    ]
    assert rules("A1__x.sql", "DELETE FROM sessions;") == [(1, "unbatched-write")]
    assert rules("A1__x.sql", "UPDATE users SET email = name WHERE id = 42;") == []
    assert rules("A1__x.sql", "UPDATE users SET a = 1 WHERE id IN (1, 2) AND a IS NULL;") == []
    assert rules("V1__x.sql", "UPDATE users SET email = name;") == []
    assert rules("A1__x.sql", BACKFILL) == []
    advice = lint_script(script("A1__x.sql", "UPDATE users SET a = 1;"))[0].message
    assert "-- lockgate:batch table=users key=id size=1000" in advice


# whole walks on a real PostgreSQL

ROWS = 20_000


def customers(url: str, rows: int = ROWS, key: str = "bigint", values: str = "g") -> None:
    query(
        url,
        f"CREATE TABLE customers (id {key} PRIMARY KEY, full_name text NOT NULL, email text, touched int NOT NULL DEFAULT 0);"
        f"INSERT INTO customers (id, full_name) SELECT {values}, 'Name ' || g FROM generate_series(1, {rows}) g;"
        "ANALYZE customers",
    )


def migrations(tmp_path: Path, sql: str = BACKFILL) -> Path:
    return write(tmp_path / "m", {"V1__noop.sql": "SELECT 1;", "A1__backfill_email.sql": sql})


def expand(directory: Path, url: str) -> None:
    assert lockgate("migrate", "--dir", str(directory), url=url).code == 0


def counts(url: str) -> tuple[int, int, int]:
    """(rows touched once, rows touched more than once, rows never touched)"""
    return query(
        url,
        "SELECT count(*) FILTER (WHERE touched = 1), count(*) FILTER (WHERE touched > 1), "
        "count(*) FILTER (WHERE touched = 0 OR email IS NULL) FROM customers",
    )[0]


def test_every_row_is_updated_exactly_once_and_the_history_says_so(tmp_path: Path, database_url: str) -> None:
    customers(database_url)
    d = migrations(tmp_path, BACKFILL.replace("size=1000", "size=300"))
    expand(d, database_url)
    plan = lockgate("plan", "--dir", str(d), "--phase", "background", "--json", url=database_url)
    assert plan.json["pending"][0]["statements"] == 1  # :start and :end parse
    progress_file = tmp_path / "progress.json"
    result = lockgate(
        "migrate", "--dir", str(d), "--phase", "background", "--progress-file", str(progress_file), url=database_url
    )
    assert result.code == 0, result.err
    assert counts(database_url) == (ROWS, 0, 0)
    assert query(database_url, "SELECT email FROM customers WHERE id = 7") == [("name 7@example.com",)]
    assert ("1", "background", "A1__backfill_email.sql", True) in history(database_url)
    row = query(database_url, "SELECT rows, scanned, batches >= 2, done, state FROM lockgate_batch_progress")
    assert row == [(ROWS, ROWS, True, True, "done")]
    assert "done:" in result.out and "rows/s" in result.out
    reported = last_progress(result.out)  # the marked line the operator reads from the pod's log
    assert reported is not None and (reported.state, reported.rows, reported.percent) == ("done", ROWS, 100.0)
    document = json.loads(progress_file.read_text())
    assert (document["state"], document["rows"], document["percent"]) == ("done", ROWS, 100.0)
    info = lockgate("info", "--dir", str(d), "--json", url=database_url)
    entry = info.json["background"][0]
    assert entry["state"] == "applied" and entry["progress"]["rows"] == ROWS
    assert "batched: " in lockgate("info", "--dir", str(d), url=database_url).out


def walk_all(tmp_path: Path, url: str, sql: str) -> None:
    d = migrations(tmp_path, sql)
    expand(d, url)
    result = lockgate("migrate", "--dir", str(d), "--phase", "background", url=url)
    assert result.code == 0, result.err


@pytest.mark.parametrize(
    ("key", "values", "size"),
    [("text", "md5(g::text)", 170), ("uuid", "md5(g::text)::uuid", 128), ("numeric", "g / 3.0", 100)],
)
def test_non_integer_keys_walk_in_their_own_order(
    tmp_path: Path, database_url: str, key: str, values: str, size: int
) -> None:
    customers(database_url, 3000, key=key, values=values)
    walk_all(tmp_path, database_url, BACKFILL.replace("size=1000", f"size={size}"))
    assert counts(database_url) == (3000, 0, 0)


EDGE_UUID = "ffffffff-ffff-ffff-ffff-ffffffffffff"
SOME_UUIDS = f"CASE g WHEN 1 THEN '{EDGE_UUID}'::uuid ELSE md5(g::text)::uuid END"


@pytest.mark.parametrize(
    ("key", "values", "size", "maximum"),
    [
        ("smallint", "32767 - g + 1", 7, "32767"),  # keys up to the type's maximum: nothing above it
        ("integer", "2147483647 - g + 1", 10, "2147483647"),
        ("bigint", "9223372036854775807 - g + 1", 1, "9223372036854775807"),
        ("bigint", "9223372036854775807 - 2 * g + 2", 300, "9223372036854775807"),  # one batch
        ("uuid", SOME_UUIDS, 9, EDGE_UUID),
        ("uuid", SOME_UUIDS, 1, EDGE_UUID),
    ],
)
def test_keys_at_their_types_maximum_are_each_walked_exactly_once(
    tmp_path: Path, database_url: str, key: str, values: str, size: int, maximum: str
) -> None:
    customers(database_url, 300, key=key, values=values)
    assert query(database_url, "SELECT id::text FROM customers ORDER BY id DESC LIMIT 1") == [(maximum,)]
    walk_all(tmp_path, database_url, BACKFILL.replace("size=1000", f"size={size}"))
    assert counts(database_url) == (300, 0, 0)
    assert query(database_url, "SELECT done, last_key FROM lockgate_batch_progress") == [(True, maximum)]


def test_a_timestamp_key_with_more_rows_per_value_than_a_batch(tmp_path: Path, database_url: str) -> None:
    query(
        database_url,
        "CREATE TABLE customers (id bigserial, at timestamptz NOT NULL, full_name text NOT NULL, email text, touched int NOT NULL DEFAULT 0);"
        "CREATE INDEX ON customers (at);"
        "INSERT INTO customers (at, full_name) SELECT timestamptz '2026-01-01' + (g / 7) * interval '1 hour', 'N' || g "
        "FROM generate_series(1, 2000) g",
    )
    sql = BACKFILL.replace("key=id size=1000", "key=at size=5").replace(
        "id >= :start AND id < :end", "at >= :start AND at < :end"
    )
    walk_all(tmp_path, database_url, sql)
    assert counts(database_url) == (2000, 0, 0)


def test_mixed_case_table_and_key(tmp_path: Path, database_url: str) -> None:
    query(
        database_url,
        'CREATE TABLE "Customers" ("Id" int PRIMARY KEY, touched int NOT NULL DEFAULT 0);'
        'INSERT INTO "Customers" ("Id") SELECT generate_series(1, 500)',
    )
    sql = '-- lockgate:batch table="Customers" key="Id" size=40\nUPDATE "Customers" SET touched = touched + 1 WHERE "Id" >= :start AND "Id" < :end;'
    walk_all(tmp_path, database_url, sql)
    assert query(database_url, 'SELECT touched, count(*) FROM "Customers" GROUP BY touched') == [(1, 500)]


def test_an_empty_table_finishes_at_once(tmp_path: Path, database_url: str) -> None:
    customers(database_url, 0)
    d = migrations(tmp_path)
    expand(d, database_url)
    assert lockgate("migrate", "--dir", str(d), "--phase", "background", url=database_url).code == 0
    assert ("1", "background", "A1__backfill_email.sql", True) in history(database_url)


def walk_in_background(d: Path, url: str) -> tuple[int, str]:
    runner = popen("migrate", "--dir", str(d), "--phase", "background", url=url)
    out, err = runner.communicate(timeout=120)
    return runner.returncode, out + err


SMALL_BATCHES = BACKFILL.replace("size=1000", "size=250 target=1ms")  # shrinks to 25 rows: hundreds of batches


def slow(sql: str, seconds: float) -> str:
    """Each batch sleeps in its statement, so a signal most likely lands mid-batch."""
    return sql.replace(
        "touched = touched + 1", f"touched = touched + 1 + 0 * (SELECT count(*) FROM pg_sleep({seconds}))"
    )


def wait_for_batches(url: str, runner: subprocess.Popen[str]) -> None:
    """Until the runner committed a batch in this run (its start-up takes a second or two)."""
    before = (
        query(url, "SELECT to_regclass('lockgate_batch_progress') IS NOT NULL")[0][0]
        and query(url, "SELECT max(batches) FROM lockgate_batch_progress")[0][0]
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and runner.poll() is None:
        if query(url, "SELECT to_regclass('lockgate_batch_progress') IS NOT NULL")[0][0]:
            if (query(url, "SELECT max(batches) FROM lockgate_batch_progress")[0][0] or 0) > (before or 0):
                return
        time.sleep(0.05)


def test_sigkill_at_random_points_never_repeats_or_skips_a_range(tmp_path: Path, database_url: str) -> None:
    customers(database_url)
    d = migrations(tmp_path, slow(SMALL_BATCHES, 0.005))
    expand(d, database_url)
    rng = random.Random(12)
    kills = 0
    for _ in range(4):
        runner = popen("migrate", "--dir", str(d), "--phase", "background", url=database_url)
        wait_for_batches(database_url, runner)
        time.sleep(rng.uniform(0.0, 0.6))
        if runner.poll() is None:
            runner.kill()
            kills += 1
        runner.communicate()
    assert kills >= 3
    before = query(database_url, "SELECT batches, done FROM lockgate_batch_progress")[0]
    assert before[0] > 0 and not before[1]
    info = lockgate("info", "--dir", str(d), "--json", url=database_url).json["background"][0]
    assert info["progress"]["state"] == "interrupted"
    code, output = walk_in_background(d, database_url)
    assert code == 0, output
    assert f"resuming after batch {before[0]}" in output
    assert counts(database_url) == (ROWS, 0, 0)


def test_sigterm_finishes_the_batch_and_exits_paused(tmp_path: Path, database_url: str) -> None:
    customers(database_url)
    d = migrations(tmp_path, slow(BACKFILL.replace("size=1000", "size=2000 target=200ms"), 0.2))
    expand(d, database_url)
    summary = tmp_path / "summary.json"
    runner = popen(
        "migrate", "--dir", str(d), "--phase", "background", "--summary-file", str(summary), url=database_url
    )
    wait_for_batches(database_url, runner)
    runner.send_signal(signal.SIGTERM)
    out, err = runner.communicate(timeout=30)
    assert runner.returncode == 5, out + err
    batches, rows, state = query(database_url, "SELECT batches, rows, state FROM lockgate_batch_progress")[0]
    assert f"paused after batch {batches}" in out and state == "paused" and 0 < rows < ROWS
    reported = last_progress(out)
    assert reported is not None and (reported.state, reported.batches) == ("paused", batches)
    assert counts(database_url) == (rows, 0, ROWS - rows)  # the batch in flight committed whole
    report = json.loads(summary.read_text())
    assert report["exit_code"] == 5 and report["applied_count"] == 0 and "paused after batch" in report["message"]
    assert ("1", "background", "A1__backfill_email.sql", True) not in history(database_url)
    info = lockgate("info", "--dir", str(d), "--json", url=database_url).json["background"][0]
    assert (info["state"], info["progress"]["state"]) == ("pending", "paused")
    assert walk_in_background(d, database_url)[0] == 0
    assert counts(database_url) == (ROWS, 0, 0)


def test_resume_refuses_a_script_edited_mid_walk(tmp_path: Path, database_url: str) -> None:
    customers(database_url)
    d = migrations(tmp_path, slow(BACKFILL.replace("size=1000", "size=2000 target=200ms"), 0.2))
    expand(d, database_url)
    runner = popen("migrate", "--dir", str(d), "--phase", "background", url=database_url)
    wait_for_batches(database_url, runner)
    runner.send_signal(signal.SIGTERM)
    runner.communicate(timeout=30)
    (d / "A1__backfill_email.sql").write_text(BACKFILL.replace("size=1000", "size=2000"))
    result = lockgate("migrate", "--dir", str(d), "--phase", "background", url=database_url)
    assert result.code == 4
    assert "A1__backfill_email.sql changed while its batched walk was in progress" in result.err
    assert "DELETE FROM public.lockgate_batch_progress WHERE script = 'A1__backfill_email.sql'" in result.err


def test_invalid_batched_scripts_are_refused_before_anything_runs(tmp_path: Path, database_url: str) -> None:
    customers(database_url, 10)
    d = write(
        tmp_path / "m",
        {
            "V1__noop.sql": "SELECT 1;",
            "A1__fine.sql": "UPDATE customers SET touched = touched + 1;",
            "A2__bad.sql": "-- lockgate:batch table=customers key=id size=10 speed=fast\nUPDATE customers SET touched = 1 WHERE id >= :start AND id < :end;",
        },
    )
    expand(d, database_url)
    result = lockgate("migrate", "--dir", str(d), "--phase", "background", url=database_url)
    assert result.code == 4 and "A2__bad.sql line 1: 'speed=fast' in the batch header" in result.err
    assert query(database_url, "SELECT sum(touched) FROM customers") == [(0,)]


def test_under_pressure_it_says_why_and_waits(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lockgate.cli import main
    from lockgate.runner.batched import pressure

    customers(database_url, 100)
    d = migrations(tmp_path)
    expand(d, database_url)
    reasons = iter(["replication lag 12 s on standby-1", "autovacuum on customers"])
    asked: list[str] = []
    monkeypatch.setattr(
        pressure, "wait_reason", lambda _conn, table, _limits: asked.append(table) or next(reasons, None)
    )
    monkeypatch.setattr(batch, "wait_backoff", lambda attempt: 0.01)
    assert main(["migrate", "--dir", str(d), "--phase", "background", "--database-url", database_url]) == 0
    out = capsys.readouterr().out
    assert "waiting: replication lag 12 s on standby-1" in out and "waiting: autovacuum on customers" in out
    assert asked == ["customers"] * 3 and counts(database_url) == (100, 0, 0)


def test_batched_scripts_refuse_single_transaction_and_sqlite(tmp_path: Path, database_url: str) -> None:
    customers(database_url, 10)
    d = migrations(tmp_path)
    expand(d, database_url)
    together = lockgate("migrate", "--dir", str(d), "--phase", "background", "--single-transaction", url=database_url)
    assert together.code == 4 and "A1__backfill_email.sql: a batched script commits batch by batch" in together.err
    sqlite = f"sqlite:///{tmp_path / 'local.db'}"
    expand(d, sqlite)
    local = lockgate("migrate", "--dir", str(d), "--phase", "background", url=sqlite)
    assert local.code == 4 and "A1__backfill_email.sql: batched scripts need PostgreSQL" in local.err


def test_a_key_without_an_index_is_refused(tmp_path: Path, database_url: str) -> None:
    query(database_url, "CREATE TABLE customers (id int, full_name text, email text, touched int DEFAULT 0)")
    d = migrations(tmp_path)
    expand(d, database_url)
    result = lockgate("migrate", "--dir", str(d), "--phase", "background", url=database_url)
    assert result.code == 4 and "no btree index starts with customers.id" in result.err


def test_a_failing_batch_keeps_earlier_batches_and_resumes(tmp_path: Path, database_url: str) -> None:
    customers(database_url, 1000)
    query(
        database_url,
        "ALTER TABLE customers ALTER full_name DROP NOT NULL; UPDATE customers SET full_name = NULL WHERE id = 700",
    )
    sql = BACKFILL.replace("size=1000", "size=100").replace(
        "touched = touched + 1", "touched = touched + 1 + CASE WHEN full_name IS NULL THEN 1 / touched ELSE 0 END"
    )
    d = migrations(tmp_path, sql)
    expand(d, database_url)
    failed = lockgate("migrate", "--dir", str(d), "--phase", "background", "--json", url=database_url)
    assert failed.code == 1 and failed.json["error"]["sqlstate"] == "22012"
    assert "earlier batches stay committed: rerun to resume" in failed.json["message"]
    assert failed.json["error"]["line"] == 2 and query(
        database_url, "SELECT rows > 0 FROM lockgate_batch_progress"
    ) == [(True,)]
    assert counts(database_url)[1] == 0 and query(database_url, "SELECT state FROM lockgate_batch_progress") == [
        ("failed",)
    ]
    query(database_url, "UPDATE customers SET full_name = 'fixed' WHERE id = 700")
    assert lockgate("migrate", "--dir", str(d), "--phase", "background", url=database_url).code == 0
    assert counts(database_url) == (1000, 0, 0)

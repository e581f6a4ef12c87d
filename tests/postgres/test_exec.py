"""`lockgate exec -- COMMAND`: another tool under the migration lock, audited, on a real PostgreSQL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from lockgate.runner.database import advisory_key
from lockgate.runner.exec_command import exit_status, run_description, should_forward
from tests.imports_support import loaded
from tests.runner_support import lockgate, popen, query, write

MANAGE = Path(__file__).resolve().parents[2] / "examples" / "exec" / "manage.py"
PYTHON = os.path.basename(sys.executable)
RACERS = 5


def exec_rows(url: str) -> list[tuple[object, ...]]:
    """(script, description, success) of every exec run, in order."""
    return query(
        url,
        "SELECT script, description, success FROM lockgate_schema_history WHERE phase = 'exec' ORDER BY installed_rank",
    )


def overlapping_runs(url: str) -> list[tuple[object, ...]]:
    return query(
        url,
        "SELECT a.pid, b.pid FROM stand_in_runs a JOIN stand_in_runs b ON a.pid < b.pid "
        "AND a.started < b.ended AND b.started < a.ended",
    )


def test_racing_execs_run_the_tool_one_at_a_time_and_audit_every_run(database_url: str) -> None:
    racers = [
        popen(
            "exec",
            "--version-label",
            "42",
            "--lock-wait",
            "60",
            "--",
            sys.executable,
            str(MANAGE),
            "migrate",
            url=database_url,
        )
        for _ in range(RACERS)
    ]
    results = [(r.wait(timeout=120), r.stdout.read(), r.stderr.read()) for r in racers]
    assert [code for code, _, _ in results] == [0] * RACERS, results
    outputs = sorted(out for _, out, _ in results)  # the tool's stdout passes through as it is
    assert outputs == ["Applying app.0002_count... OK\n"] + ["No migrations to apply.\n"] * (RACERS - 1)
    assert query(database_url, "SELECT n FROM stand_in_counter") == [(1,)]
    assert query(database_url, "SELECT count(*) FROM stand_in_runs") == [(RACERS,)]
    assert overlapping_runs(database_url) == []
    rows = exec_rows(database_url)
    assert len(rows) == RACERS and all(script == PYTHON and success for script, _, success in rows), rows
    assert all(str(description).startswith("42: exit 0 on ") for _, description, _ in rows)
    assert all("lockgate exec: holding the migration lock" in err for _, _, err in results)


def test_the_stand_in_really_races_without_lockgate(database_url: str) -> None:
    """The check above can fail: the same five runs without `lockgate exec` collide."""
    env = os.environ | {"LOCKGATE_DATABASE_URL": database_url}
    racers = [
        subprocess.Popen(
            [sys.executable, str(MANAGE), "migrate"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(RACERS)
    ]
    codes = [r.wait(timeout=60) for r in racers]
    counter = query(database_url, "SELECT n FROM stand_in_counter") if any(c == 0 for c in codes) else []
    assert codes.count(0) < RACERS or counter != [(1,)] or overlapping_runs(database_url)


def test_lock_held_past_lock_wait_exits_3_and_the_command_never_runs(tmp_path: Path, database_url: str) -> None:
    marker = tmp_path / "ran"
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (advisory_key("lockgate_schema_history", "expand"),))
        result = lockgate("exec", "--lock-wait", "1", "--", "touch", str(marker), url=database_url)
    assert result.code == 3 and "held the migration lock for more than 1s" in result.err, result.err
    assert not marker.exists() and result.out == ""
    assert query(database_url, "SELECT to_regclass('lockgate_schema_history') IS NULL") == [(True,)]


def test_exec_shares_the_lock_with_migrate(tmp_path: Path, database_url: str) -> None:
    d = write(tmp_path / "m", {"V1__a.sql": "CREATE TABLE a (id int);"})
    child = "import time; print('ready', flush=True); time.sleep(3)"
    tool = popen("exec", "--", sys.executable, "-c", child, url=database_url)
    assert tool.stdout is not None and tool.stdout.readline() == "ready\n"
    holding_a_snapshot = query(
        database_url,
        "SELECT state FROM pg_stat_activity WHERE application_name = 'lockgate' "
        "AND (state <> 'idle' OR backend_xmin IS NOT NULL)",
    )
    assert holding_a_snapshot == []  # a CREATE INDEX CONCURRENTLY elsewhere need not wait for lockgate
    blocked = lockgate("migrate", "--dir", str(d), "--lock-wait", "0", url=database_url)
    assert tool.wait(timeout=30) == 0
    assert blocked.code == 3, blocked.out + blocked.err


def test_the_exit_code_passes_through_and_a_failed_run_blocks_nothing(tmp_path: Path, database_url: str) -> None:
    summary = tmp_path / "summary.json"
    failed = lockgate(
        "exec", "--summary-file", str(summary), "--", "sh", "-c", "echo out; echo err >&2; exit 7", url=database_url
    )
    assert (failed.code, failed.out) == (7, "out\n")
    assert "err\n" in failed.err and "lockgate: sh exited 7 after" in failed.err
    assert '"exit_code":7' in summary.read_text()
    assert exec_rows(database_url) == [("sh", f"exit 7 on {os.uname().nodename}", False)]
    d = write(tmp_path / "m", {"V1__a.sql": "CREATE TABLE a (id int);"})
    assert lockgate("migrate", "--dir", str(d), url=database_url).code == 0  # not refused as a failed migration
    assert lockgate("repair", url=database_url).code == 0
    assert len(exec_rows(database_url)) == 1  # repair keeps the audit trail
    info = lockgate("info", "--dir", str(d), "--json", url=database_url)
    assert [(e["script"], e["state"]) for e in info.json["exec"]] == [("sh", f"exit 7 on {os.uname().nodename}")]
    assert info.json["expand"][0]["state"] == "applied"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_is_forwarded_and_the_run_still_recorded(signum: signal.Signals, database_url: str) -> None:
    child = (
        "import signal, sys, time\n"
        f"signal.signal({int(signum)}, lambda *_: sys.exit(42))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")} | {
        "LOCKGATE_DATABASE_URL": database_url
    }
    runner = subprocess.Popen(
        [sys.executable, "-m", "lockgate", "exec", "--version-label", "7", "--", sys.executable, "-c", child],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # no terminal: only lockgate's forwarding can reach the child
    )
    assert runner.stdout is not None and runner.stdout.readline() == "ready\n"
    started = time.monotonic()
    runner.send_signal(signum)
    assert runner.wait(timeout=30) == 42
    assert time.monotonic() - started < 10
    assert exec_rows(database_url) == [(PYTHON, f"7: exit 42 on {os.uname().nodename}", False)]


def test_a_run_killed_with_sigkill_leaves_its_started_row_which_blocks_nothing(
    tmp_path: Path, database_url: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")} | {
        "LOCKGATE_DATABASE_URL": database_url
    }
    runner = subprocess.Popen(
        [sys.executable, "-m", "lockgate", "exec", "--version-label", "7", "--", sys.executable, "-c", SLEEPER],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group: lockgate and the tool, killed together
    )
    assert runner.stdout is not None and runner.stdout.readline() == "ready\n"
    host = os.uname().nodename
    assert exec_rows(database_url) == [(PYTHON, f"7: started, no end recorded on {host}", False)]  # while it runs
    os.killpg(runner.pid, signal.SIGKILL)
    assert runner.wait(timeout=30) == -signal.SIGKILL
    assert exec_rows(database_url) == [(PYTHON, f"7: started, no end recorded on {host}", False)]
    d = write(tmp_path / "m", {"V1__a.sql": "CREATE TABLE a (id int);"})
    migrated = lockgate("migrate", "--dir", str(d), "--lock-wait", "5", url=database_url)
    assert migrated.code == 0, migrated.err  # the lock was freed and the row refuses nothing
    info = lockgate("info", "--dir", str(d), "--json", url=database_url)
    assert [(e["state"], e["ms"]) for e in info.json["exec"]] == [(f"7: started, no end recorded on {host}", 0)]
    assert [e["state"] for e in info.json["expand"]] == ["applied"]
    plan = lockgate("plan", "--dir", str(d), "--json", url=database_url)
    assert plan.code == 0 and plan.json["pending"] == [], plan.out + plan.err
    assert lockgate("repair", url=database_url).code == 0
    assert lockgate("exec", "--version-label", "8", "--", "true", url=database_url).code == 0
    assert exec_rows(database_url) == [
        (PYTHON, f"7: started, no end recorded on {host}", False),  # repair keeps the trace
        ("true", f"8: exit 0 on {host}", True),  # a normal run completes its own row
    ]


SLEEPER = "import time\nprint('ready', flush=True)\ntime.sleep(60)\n"


def test_the_child_gets_no_secret_it_did_not_have_and_lockgate_prints_none(postgres, database_url: str) -> None:
    dump_env = "import os; print(sorted(os.environ.items()))"
    result = lockgate("exec", "--database-url", database_url, "--", sys.executable, "-c", dump_env)
    assert result.code == 0, result.err
    assert postgres.password not in result.out  # given as an argument: not put into the child's environment
    assert postgres.password not in result.err
    inherited = lockgate("exec", "--", sys.executable, "-c", dump_env, url=database_url)
    assert "LOCKGATE_DATABASE_URL" in inherited.out  # the tool still gets the environment it was given


def test_usage_errors_exit_2_before_anything_runs(database_url: str) -> None:
    assert lockgate("exec", url=database_url).code == 2
    missing = lockgate("exec", "--", "no-such-tool-here", url=database_url)
    assert missing.code == 2 and "command not found or not executable: no-such-tool-here" in missing.err
    assert query(database_url, "SELECT to_regclass('lockgate_schema_history') IS NULL") == [(True,)]


def test_exec_reaches_the_server_through_psycopg_alone(tmp_path: Path, database_url: str) -> None:
    """The lock, the pooler check, the history table and both audit writes, with no ORM or SQL parser
    loaded (it runs in every pod's start-up: benchmarks/startup.py)."""
    code, modules = loaded(
        tmp_path, "exec", "--version-label", "7", "--", "true", env={"LOCKGATE_DATABASE_URL": database_url}
    )
    assert (code, modules) == (0, {"psycopg"})
    assert exec_rows(database_url) == [("true", f"7: exit 0 on {socket.gethostname()}", True)]


@pytest.mark.parametrize(("returncode", "status"), [(0, 0), (3, 3), (-15, 143), (-9, 137)])
def test_exit_status_is_the_shells(returncode: int, status: int) -> None:
    assert exit_status(returncode) == status


def test_only_signals_the_child_did_not_get_from_the_terminal_are_forwarded() -> None:
    assert should_forward(signal.SIGTERM, child_told_by_terminal=True)
    assert should_forward(signal.SIGINT, child_told_by_terminal=False)
    assert not should_forward(signal.SIGINT, child_told_by_terminal=True)


def test_the_description_keeps_label_exit_and_host_but_no_arguments() -> None:
    assert run_description("42", 0, "pod-a") == "42: exit 0 on pod-a"
    assert run_description(None, 1, "pod-a") == "exit 1 on pod-a"
    assert run_description("42", None, "pod-a") == "42: started, no end recorded on pod-a"

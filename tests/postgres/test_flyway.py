"""Real Flyway 11 (examples/flyway) on a real PostgreSQL: the SchemaMigration's phase commands as
they are written, Flyway issue 950's split, racing `lockgate exec -- flyway migrate`, and a broken
migration's error line. Flyway comes from hack/fetch-flyway.sh (cached, checksummed jars)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml

from lockgate.shared.report import parse_report
from tests.runner_support import popen, query

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "flyway"
RACERS = 5
OLD_ROWS = 20_000  # 20 batches of the backfill, 0.1 s apart: the background phase runs for seconds


@pytest.fixture(scope="session")
def flyway() -> str:
    """The cached Flyway launcher, fetched on first use the way `make flyway` does."""
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        pytest.fail("Flyway needs a Java runtime: run `make flyway` (installs openjdk-17-jre-headless)")
    done = subprocess.run([str(ROOT / "hack" / "fetch-flyway.sh")], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def phase_command(phase: str) -> list[str]:
    """The phase's command from the example's SchemaMigration, with the example's wrapper by path."""
    spec = yaml.safe_load((EXAMPLE / "schemamigration.yaml").read_text())["spec"]
    command: list[str] = spec[phase]["command"]
    assert command[0] == "flyway-lockgate"
    return [str(EXAMPLE / "flyway-lockgate"), *command[1:]]


def run(command: list[str], url: str, flyway: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    env |= {"LOCKGATE_DATABASE_URL": url, "FLYWAY": flyway, **extra}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def flyway_history(url: str, table: str) -> list[tuple[object, ...]]:
    return query(url, f"SELECT installed_rank, version, script, success FROM {table} ORDER BY installed_rank")


def test_flyway_migrate_is_the_expand_phase_with_its_own_history(database_url: str, flyway: str) -> None:
    done = run(phase_command("expand"), database_url, flyway)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Successfully applied 2 migrations" in done.stdout
    assert flyway_history(database_url, "flyway_history_expand") == [
        (1, "1", "V1__orders.sql", True),
        (2, "2", "V2__orders_customer_key.sql", True),
    ]
    assert "lockgate-test-password" not in done.stdout + done.stderr  # the JDBC URL Flyway prints has none
    again = run(phase_command("expand"), database_url, flyway)
    assert again.returncode == 0 and "is up to date" in again.stdout


def test_the_wrapper_decodes_a_password_with_url_escapes_and_never_prints_it(database_url: str, flyway: str) -> None:
    password, role = "p@ss:w/rd%20 and more", f"flyway_{uuid.uuid4().hex[:8]}"  # roles outlive the database
    query(database_url, f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    query(database_url, f"GRANT ALL ON SCHEMA public TO {role}")
    escaped = "p%40ss%3Aw%2Frd%2520%20and%20more"
    url = database_url.replace("postgres:lockgate-test-password@", f"{role}:{escaped}@")
    done = run(phase_command("expand"), url, flyway)
    assert done.returncode == 0, done.stdout + done.stderr
    assert query(database_url, "SELECT DISTINCT installed_by FROM flyway_history_expand") == [(role,)]
    assert password not in done.stdout + done.stderr and escaped not in done.stdout + done.stderr


class App:
    """Release 2 of the app: writes and looks up orders by customer_key while the background runs."""

    def __init__(self, url: str) -> None:
        self.url, self.stop, self.failures = url, threading.Event(), list[str]()
        self.served: list[float] = []
        self.thread = threading.Thread(target=self.loop)

    def loop(self) -> None:
        with psycopg.connect(self.url, autocommit=True, options="-c statement_timeout=1000") as conn:
            while not self.stop.is_set():
                try:
                    conn.execute("INSERT INTO orders (customer, customer_key) VALUES ('New', 'new')")
                    conn.execute("SELECT count(*) FROM orders WHERE customer_key = 'new'").fetchone()
                    self.served.append(time.monotonic())
                except psycopg.Error as error:
                    self.failures.append(str(error))
                time.sleep(0.02)


def test_the_long_migrations_run_as_background_while_the_app_works(database_url: str, flyway: str) -> None:
    """Flyway issue 950: the expand phase ends fast, the index build and backfill run after it."""
    expand_started = time.monotonic()
    assert run(phase_command("expand"), database_url, flyway).returncode == 0
    expand_ended = time.monotonic()
    query(database_url, f"INSERT INTO orders (customer) SELECT 'Old' || g FROM generate_series(1, {OLD_ROWS}) g")

    app = App(database_url)  # the new pods: Ready once expand is done
    app.thread.start()
    background_started = time.monotonic()
    done = run(phase_command("background"), database_url, flyway)
    background_ended = time.monotonic()
    app.stop.set()
    app.thread.join()

    assert done.returncode == 0, done.stdout + done.stderr
    assert "[non-transactional]" in done.stdout
    assert expand_ended < background_started < background_ended
    during = [t for t in app.served if background_started < t < background_ended]
    assert app.failures == [] and len(during) >= 10, (app.failures, len(during))
    print(
        f"expand {expand_ended - expand_started:.1f}s; background {background_ended - background_started:.1f}s "
        f"with {len(during)} app round trips served meanwhile"
    )
    assert query(database_url, "SELECT count(*) FROM orders WHERE customer_key IS NULL") == [(0,)]
    assert query(
        database_url,
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_customer_key_idx'::regclass",
    ) == [(True,)]
    assert [(v, ok) for _, v, _, ok in flyway_history(database_url, "flyway_history_background")] == [
        ("0", True),  # Flyway's baseline marker: the schema was not empty when this table was made
        ("1", True),
        ("2", True),
    ]
    contract = run(phase_command("contract"), database_url, flyway)
    assert contract.returncode == 0, contract.stdout + contract.stderr
    assert query(
        database_url, "SELECT convalidated FROM pg_constraint WHERE conname = 'orders_customer_key_present'"
    ) == [(True,)]


def test_racing_lockgate_exec_flyway_migrate_runs_one_at_a_time(
    database_url: str, flyway: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWAY", flyway)  # popen passes the environment on
    racers = [
        popen("exec", "--version-label", "2", "--lock-wait", "300", "--", *phase_command("expand"), url=database_url)
        for _ in range(RACERS)
    ]
    results = [(r.wait(timeout=600), r.stdout.read() if r.stdout else "") for r in racers]
    assert [code for code, _ in results] == [0] * RACERS, results
    applied = [out for _, out in results if "Successfully applied 2 migrations" in out]
    up_to_date = [out for _, out in results if "is up to date. No migration necessary." in out]
    assert (len(applied), len(up_to_date)) == (1, RACERS - 1)
    # lockgate's history table came first, so Flyway found a non-empty schema and baselined at 0.
    assert [(v, ok) for _, v, _, ok in flyway_history(database_url, "flyway_history_expand")] == [
        ("0", True),
        ("1", True),
        ("2", True),
    ]
    runs = query(
        database_url,
        "SELECT installed_on, installed_on + execution_ms * interval '1 ms', success FROM lockgate_schema_history "
        "WHERE phase = 'exec' ORDER BY installed_on",
    )
    assert len(runs) == RACERS and all(ok for *_, ok in runs), runs
    assert all(earlier[1] <= later[0] for earlier, later in zip(runs, runs[1:], strict=False)), runs  # no two overlap


def test_a_broken_migrations_flyway_error_line_reaches_lockgate_exec_and_the_status(
    database_url: str, flyway: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Release 3's expand adds sql/broken (its V3 adds a column that exists), as the cluster test does."""
    broken = "-locations=filesystem:sql/expand,filesystem:sql/broken"
    command = [broken if arg.startswith("-locations=") else arg for arg in phase_command("expand")]
    monkeypatch.setenv("FLYWAY", flyway)
    racer = popen("exec", "--version-label", "3", "--", *command, url=database_url)
    code = racer.wait(timeout=300)
    out, err = racer.stdout.read() if racer.stdout else "", racer.stderr.read() if racer.stderr else ""

    assert code == 1, out + err  # lockgate exec exits with Flyway's code
    log = out + err
    assert 'ERROR: Migration of schema "public" to version "3 - broken" failed!' in log
    assert "SQL State  : 42701" in log
    assert query(database_url, "SELECT success FROM lockgate_schema_history WHERE phase = 'exec'") == [(False,)]
    assert [v for _, v, _, _ in flyway_history(database_url, "flyway_history_expand")] == ["0", "1", "2"]
    # The Job's container ends the same way: FallbackToLogsOnError makes the log's tail (at most
    # 2048 bytes) the termination message, which the operator reads into the Stalled message.
    report = parse_report(log.encode()[-2048:].decode(errors="ignore"), code)
    assert report.error is not None and report.error.startswith("ERROR: Migration of schema")
    assert 'column "customer_key" of relation "orders" already exists' in report.error

"""Benchmark: a backfill as one UPDATE versus a batched background script, under a probe load.

On a table of --rows rows (default 5 M) it measures, while a steady load of point reads and
writes runs (--probe-rate operations per second, half each): probe latency p50/p99/max and
errors, total backfill time and dead tuples left, once for one big UPDATE and once for the same
change batched; then kills a batched walk with SIGKILL at random points, reruns it and counts
rows updated twice or missed. Prints figures; not a timed test. Starts its own PostgreSQL
(fsync on) unless LOCKGATE_TEST_DATABASE_URL names one. Run:
  .venv/bin/python benchmarks/backfill.py [--rows N] [--size N] [--probe-rate N] [--kills N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devcluster.postgres import ExternalPostgres, PostgresServer  # noqa: E402

CHANGE = "email = lower(full_name) || '@example.com', touched = touched + 1"
SINGLE = f"UPDATE bench SET {CHANGE} WHERE email IS NULL;\n"
BATCHED = "-- lockgate:batch table=bench key=id size={size}\nUPDATE bench SET {change} WHERE id >= :start AND id < :end AND email IS NULL;\n"
PROBE_TIMEOUT_MS = 5000  # a probe waiting longer counts as an error, as an app's request would


@dataclass
class Samples:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def line(self, what: str) -> str:
        if not self.latencies_ms:
            return f"{what}: no samples"
        ordered = sorted(self.latencies_ms)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return (
            f"{what}: n={len(ordered)} p50 {statistics.median(ordered):.1f} ms  p99 {p99:.1f} ms  "
            f"max {ordered[-1]:.1f} ms  errors {self.errors}"
        )


class Probe:
    """Point reads and point writes at a steady rate, each on its own connection and thread."""

    def __init__(self, url: str, rows: int, rate: float) -> None:
        self.url, self.rows, self.interval = url, rows, 2.0 / rate
        self.reads, self.writes = Samples(), Samples()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._loop, args=("SELECT email FROM bench WHERE id = %s", self.reads)),
            threading.Thread(
                target=self._loop, args=("UPDATE bench SET visits = visits + 1 WHERE id = %s", self.writes)
            ),
        ]

    def __enter__(self) -> Probe:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _loop(self, sql: str, samples: Samples) -> None:
        rng = random.Random()
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"SET statement_timeout = {PROBE_TIMEOUT_MS}")
            next_at = time.monotonic()
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    conn.execute(sql, (rng.randint(1, self.rows),))
                except psycopg.Error:
                    samples.errors += 1
                samples.latencies_ms.append((time.monotonic() - started) * 1000)
                next_at = max(next_at + self.interval, time.monotonic())
                self.stop.wait(next_at - time.monotonic())


def fill(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bench (id bigint PRIMARY KEY, full_name text NOT NULL, email text, "
            "touched int NOT NULL DEFAULT 0, visits int NOT NULL DEFAULT 0)"
        )
        conn.execute(
            "INSERT INTO bench (id, full_name) SELECT g, 'Customer ' || g FROM generate_series(1, %s) g", (rows,)
        )
        conn.execute("VACUUM ANALYZE bench")


def lockgate(url: str, directory: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lockgate", "migrate", "--dir", str(directory), "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"LOCKGATE_DATABASE_URL": url, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "operator")},
    )


def prepare(server: PostgresServer | ExternalPostgres, rows: int, script: str, tmp: Path) -> tuple[str, Path]:
    url = server.create_database(f"bench_{uuid.uuid4().hex[:8]}")
    started = time.monotonic()
    fill(url, rows)
    print(f"  filled {rows:,} rows in {time.monotonic() - started:.1f} s")
    directory = tmp / uuid.uuid4().hex[:8]
    directory.mkdir()
    (directory / "V1__noop.sql").write_text("SELECT 1;")
    (directory / "A1__backfill.sql").write_text(script)
    expand = lockgate(url, directory)
    assert expand.wait() == 0, expand.communicate()
    return url, directory


def drop(server: PostgresServer | ExternalPostgres, url: str) -> None:
    """Drop a measured database, so its autovacuum does not run during the next measurement."""
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{psycopg.conninfo.conninfo_to_dict(url)["dbname"]}" WITH (FORCE)')


def scalar(url: str, sql: str) -> object:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
        return row[0] if row else None


def outcome(url: str) -> tuple[int, int]:
    """(rows updated more than once, rows missed)"""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE touched > 1), count(*) FILTER (WHERE touched = 0 OR email IS NULL) FROM bench"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def measure(
    name: str, server: PostgresServer | ExternalPostgres, args: argparse.Namespace, script: str, tmp: Path
) -> float:
    print(f"{name}:")
    url, directory = prepare(server, args.rows, script, tmp)
    with Probe(url, args.rows, args.probe_rate) as idle:
        time.sleep(5)
    print(f"  idle probe   {idle.reads.line('reads')}; {idle.writes.line('writes')}")
    with Probe(url, args.rows, args.probe_rate) as probe:
        started = time.monotonic()
        runner = lockgate(url, directory, "--phase", "background")
        out, err = runner.communicate()
        wall = time.monotonic() - started
    assert runner.returncode == 0, err[-2000:]
    time.sleep(2)  # let the backends' statistics reach pg_stat_user_tables
    twice, missed = outcome(url)
    dead = scalar(url, "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'bench'")
    vacuums = scalar(url, "SELECT autovacuum_count FROM pg_stat_user_tables WHERE relname = 'bench'")
    size = scalar(url, "SELECT pg_size_pretty(pg_table_size('bench'))")
    print(f"  during       {probe.reads.line('reads')}; {probe.writes.line('writes')}")
    if batches(url):
        walk = scalar(
            url,
            "SELECT batches || ' batches, last size ' || size || ', in batches ' || active_ms || ' ms' FROM lockgate_batch_progress",
        )
        print(f"  walk         {walk}")
    print(
        f"  backfill {wall:.1f} s wall (migrate {json.loads(out)['duration_ms'] / 1000:.1f} s); "
        f"dead tuples left {dead:,} (autovacuum runs finished meanwhile: {vacuums}); table {size}; "
        f"updated twice {twice}, missed {missed}"
    )
    drop(server, url)
    return wall


def kills(server: PostgresServer | ExternalPostgres, args: argparse.Namespace, tmp: Path) -> None:
    rows = args.kill_rows or args.rows
    print(f"resume after SIGKILL ({args.kills} kills at random points, {rows:,} rows, size {args.kill_size}):")
    url, directory = prepare(server, rows, BATCHED.format(size=args.kill_size, change=CHANGE), tmp)
    rng = random.Random(args.seed)
    for _ in range(args.kills):
        runner = lockgate(url, directory, "--phase", "background")
        done_before = batches(url)
        while batches(url) == done_before and runner.poll() is None:
            time.sleep(0.05)  # start-up takes a second or two: kill once this run has committed a batch
        time.sleep(rng.uniform(0, args.kill_within))
        runner.kill()
        runner.communicate()
        progress = scalar(url, "SELECT batches || ' batches, ' || rows || ' rows' FROM lockgate_batch_progress")
        print(f"  killed; committed so far: {progress}")
    runner = lockgate(url, directory, "--phase", "background")
    _, err = runner.communicate()
    assert runner.returncode == 0, err[-2000:]
    twice, missed = outcome(url)
    print(f"  rerun finished: rows updated twice {twice}, missed {missed}")
    drop(server, url)


def batches(url: str) -> int:
    """Batches committed so far (0 before the progress table exists)."""
    if not scalar(url, "SELECT to_regclass('lockgate_batch_progress') IS NOT NULL"):
        return 0
    return int(str(scalar(url, "SELECT coalesce(sum(batches), 0) FROM lockgate_batch_progress")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--size", type=int, default=1000, help="the batch header's size (it adapts)")
    parser.add_argument("--probe-rate", type=float, default=80, help="probe operations per second")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--kill-rows", type=int, help="rows for the kill test (default: --rows)")
    parser.add_argument("--kill-size", type=int, default=1000)
    parser.add_argument("--kill-within", type=float, default=2.0, help="seconds after a run's first batch")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip", choices=["single", "batched", "kills"], action="append", default=[])
    args = parser.parse_args()
    external = os.environ.get("LOCKGATE_TEST_DATABASE_URL")
    server = ExternalPostgres(external) if external else PostgresServer(durable=True).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            times = {}
            if "single" not in args.skip:
                times["single"] = measure("one UPDATE", server, args, SINGLE, Path(tmp))
            if "batched" not in args.skip:
                script = BATCHED.format(size=args.size, change=CHANGE)
                times["batched"] = measure("batched", server, args, script, Path(tmp))
            if len(times) == 2:
                print(f"batched / one UPDATE: {times['batched'] / times['single']:.2f}x wall time")
            if "kills" not in args.skip:
                kills(server, args, Path(tmp))
    finally:
        server.stop()


if __name__ == "__main__":
    main()

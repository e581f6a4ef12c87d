"""Benchmark: apply 1,000 pending one-statement migrations and print migrations per second.

Starts its own PostgreSQL server with default durability settings (fsync on), unless
LOCKGATE_TEST_DATABASE_URL names one. Run with `make bench` or
`.venv/bin/python benchmarks/runner_throughput.py [--count N] [--runs R]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devcluster.postgres import ExternalPostgres, PostgresServer  # noqa: E402


def write_migrations(directory: Path, count: int) -> None:
    directory.mkdir()
    (directory / "V1__table.sql").write_text("CREATE TABLE bench (id int PRIMARY KEY, note text);")
    for i in range(2, count + 1):
        (directory / f"V{i}__insert_{i}.sql").write_text(f"INSERT INTO bench VALUES ({i}, 'migration {i}');")


def run_once(url: str, directory: Path) -> tuple[float, int, int]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "lockgate", "migrate", "--dir", str(directory), "--json"],
        capture_output=True,
        text=True,
        env={"LOCKGATE_DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
        check=True,
    )
    wall = time.perf_counter() - started
    summary = json.loads(done.stdout)
    return wall, summary["duration_ms"], len(summary["applied"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import os

    external = os.environ.get("LOCKGATE_TEST_DATABASE_URL")
    server = ExternalPostgres(external) if external else PostgresServer(durable=True).start()
    try:
        rates, walls = [], []
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp) / "migrations"
            write_migrations(directory, args.count)
            for run in range(args.runs):
                url = server.create_database(f"bench_{uuid.uuid4().hex[:8]}")
                wall, migrate_ms, applied = run_once(url, directory)
                assert applied == args.count, f"applied {applied} of {args.count}"
                rates.append(applied / (migrate_ms / 1000))
                walls.append(applied / wall)
                print(
                    f"run {run + 1}: {applied} migrations, migrate {migrate_ms} ms ({rates[-1]:.0f}/s), process wall {wall:.2f} s ({walls[-1]:.0f}/s incl. start-up)"
                )
        print(
            f"median: {statistics.median(rates):.0f} migrations/s (migrate command), {statistics.median(walls):.0f}/s including process start-up; fsync on, PostgreSQL on loopback"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()

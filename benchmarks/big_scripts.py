"""Benchmark: big scripts and long histories (issue 10, defect 3), printed as figures.

- splitting 10k, 20k and 40k statements (in process: the parser, the psql-only pass, lines);
- a 10 MB file of 93k INSERTs applied end to end (`lockgate migrate` in a new process);
- `lockgate plan` (and a no-op `migrate`) over 5,000 applied scripts.

Starts its own PostgreSQL server with default durability settings (fsync on), unless
LOCKGATE_TEST_DATABASE_URL names one. Run with `make bench-big` or
`.venv/bin/python benchmarks/big_scripts.py [--runs R]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator")]

from devcluster.postgres import ExternalPostgres, PostgresServer  # noqa: E402
from lockgate.runner.statements import split_postgres  # noqa: E402


def mixed_script(count: int) -> str:
    """`count` statements of the kinds migrations hold: DDL (parsed), INSERTs with escapes, UPDATEs."""
    kinds = [
        "CREATE TABLE t{i} (id bigint PRIMARY KEY, note text DEFAULT 'n;{i}');",
        "INSERT INTO t{j} (id, note) VALUES ({i}, E'line\\n{i} it''s');",
        "CREATE INDEX t{j}_note_{i} ON t{j} (note);",
        "UPDATE t{j} SET note = $$x;{i}$$ WHERE id = {i};",
        "COMMENT ON TABLE t{j} IS 'table {i}';",
    ]
    return "\n".join(kinds[i % len(kinds)].format(i=i, j=i - i % len(kinds)) for i in range(count)) + "\n"


def inserts_file(path: Path, count: int = 93_000) -> None:
    rows = (
        f"INSERT INTO big (id, name, note, amount) VALUES ({i}, 'name {i}', 'a note about row number {i}', {i}.25);"
        for i in range(count)
    )
    path.write_text("CREATE TABLE big (id int PRIMARY KEY, name text, note text, amount numeric);\n" + "\n".join(rows))


def lockgate(url: str, *args: str) -> tuple[float, dict[str, Any]]:
    """Run the CLI of this checkout in a new process; (wall seconds, JSON summary)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "lockgate", *args, "--json"],
        capture_output=True,
        text=True,
        env={"LOCKGATE_DATABASE_URL": url, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "operator")},
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"lockgate {args[0]} exited {done.returncode}: {done.stderr[-2000:]}")
    return wall, json.loads(done.stdout)


def bench_split(runs: int) -> None:
    for count in (10_000, 20_000, 40_000):
        sql = mixed_script(count)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            statements = split_postgres(sql)
            assert all(s.transactional for s in statements)  # the classification is part of the work
            times.append(time.perf_counter() - started)
        best = min(times)
        print(f"split {count:>6} statements ({len(sql) / 1e6:.1f} MB): {best:.2f} s ({count / best:,.0f}/s)")


def bench_big_file(server: PostgresServer | ExternalPostgres, tmp: Path, runs: int) -> None:
    directory = tmp / "big"
    directory.mkdir()
    inserts_file(directory / "V1__big.sql")
    sql = (directory / "V1__big.sql").read_text()
    started = time.perf_counter()
    statements = split_postgres(sql)
    split = time.perf_counter() - started
    print(f"10 MB file: {len(sql) / 1e6:.1f} MB, {len(statements):,} statements, split {split:.2f} s")
    for run in range(runs):
        url = server.create_database(f"big_{uuid.uuid4().hex[:8]}")
        wall, summary = lockgate(url, "migrate", "--dir", str(directory))
        print(f"  run {run + 1}: migrate end to end {wall:.1f} s (migrate command {summary['duration_ms']} ms)")


def bench_plan(server: PostgresServer | ExternalPostgres, tmp: Path, runs: int, count: int = 5000) -> None:
    directory = tmp / "many"
    directory.mkdir()
    (directory / "V1__table.sql").write_text("CREATE TABLE many (id int PRIMARY KEY, note text);")
    for i in range(2, count + 1):
        (directory / f"V{i}__insert_{i}.sql").write_text(f"INSERT INTO many VALUES ({i}, 'migration {i}');")
    url = server.create_database(f"many_{uuid.uuid4().hex[:8]}")
    wall, summary = lockgate(url, "migrate", "--dir", str(directory))
    print(f"{count} scripts: first migrate {wall:.1f} s ({len(summary['applied'])} applied)")
    for command in ("plan", "migrate"):
        walls, durations = [], []
        for _ in range(runs):
            wall, summary = lockgate(url, command, "--dir", str(directory))
            walls.append(wall)
            durations.append(summary["duration_ms"])
        print(
            f"  {command} over {count} applied: median {statistics.median(walls):.2f} s per process "
            f"(command {statistics.median(durations)} ms; process start-up and loading the scripts make the rest)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    external = os.environ.get("LOCKGATE_TEST_DATABASE_URL")
    server = ExternalPostgres(external) if external else PostgresServer(durable=True).start()
    try:
        bench_split(args.runs)
        with tempfile.TemporaryDirectory() as tmp:
            bench_big_file(server, Path(tmp), args.runs)
            bench_plan(server, Path(tmp), args.runs)
    finally:
        server.stop()


if __name__ == "__main__":
    main()

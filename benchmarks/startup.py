"""Benchmark: how long `lockgate` takes to start, beside a bare `python -c pass`.

Teams run `lockgate exec` or `lockgate wait` in every app pod's start-up, so what a process pays
before it does anything is paid on every pod start. Each command runs `--runs` times in a new
process; the median and fastest wall time are printed, and the median CPU time (user + system)
of the process, which other work on a shared machine disturbs less; with the goals of issue 19:

- `lockgate --version` (imports nothing it does not use);
- `lockgate exec -- true` and a no-op `lockgate migrate`, against a PostgreSQL server of its own
  (or LOCKGATE_TEST_DATABASE_URL) on loopback; beside the no-op migrate, Flyway 11's no-op
  `flyway migrate` (hack/fetch-flyway.sh, run as examples/flyway runs it) on the same database,
  over ten scripts of the same shape, the two taking turns, and how many times faster lockgate
  is (goal: at least 3x);
- `lockgate wait` on an already expanded schema: against the cluster of `--kubeconfig` if given
  (a SchemaMigration `--namespace/--name` whose appliedVersion is at least `--version`), else
  against a loopback HTTP server that answers the one GET wait makes with such an object, so
  the figure is the client's start-up and one request, not a cluster's.

Run with `make bench-startup` or `.venv/bin/python benchmarks/startup.py [--runs N]` (Flyway needs
a Java runtime: `make flyway`).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devcluster.postgres import ExternalPostgres, PostgresServer  # noqa: E402

GOALS = {"--version": 0.05, "exec -- true": 0.3, "wait (expanded)": 0.4}
FLYWAY_GOAL = 3.0  # times Flyway's no-op migrate, at least


def lockgate() -> list[str]:
    """The console script teams call; `python -m lockgate` where it is not installed beside Python."""
    script = Path(sys.executable).parent / "lockgate"
    return [str(script)] if script.exists() else [sys.executable, "-m", "lockgate"]


def timed(argv: list[str], env: dict[str, str], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each run (CPU: the child's user + system time, its children's too)."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return walls, cpus


def in_turns(argvs: list[list[str]], env: dict[str, str], runs: int) -> list[tuple[list[float], list[float]]]:
    """timed() of each command, the commands taking turns run by run, so that a change in the
    shared machine's load weighs on all of them alike (their ratio is the figure)."""
    results: list[tuple[list[float], list[float]]] = [([], []) for _ in argvs]
    for _ in range(runs):
        for (walls, cpus), argv in zip(results, argvs, strict=True):
            wall, cpu = timed(argv, env, 1)
            walls += wall
            cpus += cpu
    return results


def row(name: str, times: tuple[list[float], list[float]], bare: float | None) -> str:
    walls, cpus = times
    median, fastest = statistics.median(walls), min(walls)
    goal = GOALS.get(name)
    verdict = f"goal < {goal:.2f} s: {'met' if median < goal else 'missed'}" if goal else ""
    over = f"(+{median - bare:.3f} s)" if bare is not None else ""
    return (
        f"{name:<26} wall median {median:6.3f} s {over:<11} fastest {fastest:6.3f} s  "
        f"cpu median {statistics.median(cpus):6.3f} s  {verdict}"
    )


def flyway() -> list[str]:
    """Flyway 11 as examples/flyway runs it: its wrapper (LOCKGATE_DATABASE_URL to JDBC) and its flyway.toml."""
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        raise SystemExit("Flyway needs a Java runtime: run `make flyway` (installs openjdk-17-jre-headless)")
    fetched = subprocess.run([str(ROOT / "hack" / "fetch-flyway.sh")], capture_output=True, text=True, check=True)
    return [str(ROOT / "examples" / "flyway" / "flyway-lockgate"), fetched.stdout.strip()]


def write_scripts(directory: Path, prefix: str) -> Path:
    """Ten one-table scripts, named as both tools read them (V1__step_1.sql ...)."""
    directory.mkdir()
    for i in range(1, 11):
        (directory / f"V{i}__step_{i}.sql").write_text(f"CREATE TABLE {prefix}{i} (id int PRIMARY KEY);")
    return directory


def migrate_noops(env: dict[str, str], tmp: Path, runs: int, floor: float) -> None:
    """lockgate's and Flyway's no-op migrate over ten applied scripts each, and the ratio."""
    wrapper, launcher = flyway()
    env = env | {"FLYWAY": launcher}
    ours = [*lockgate(), "migrate", "--dir", str(write_scripts(tmp / "lockgate", "t"))]
    theirs = [wrapper, f"-locations=filesystem:{write_scripts(tmp / 'flyway', 'f')}", "-table=flyway_bench", "migrate"]
    in_turns([ours, theirs], env, 1)  # each applies its ten; every run after is a no-op
    lockgates, flyways = in_turns([ours, theirs], env, runs)
    print(row("migrate (no-op, 10)", lockgates, floor))
    print(row("flyway migrate (no-op, 10)", flyways, floor))
    ratio = statistics.median(flyways[0]) / statistics.median(lockgates[0])
    verdict = "met" if ratio >= FLYWAY_GOAL else "missed"
    print(
        f"{'':<26} lockgate's no-op migrate is {ratio:.1f}x faster than Flyway's (wall medians; goal >= {FLYWAY_GOAL:g}x: {verdict})"
    )


@contextlib.contextmanager
def stub_api(namespace: str, name: str, applied: str) -> Iterator[Path]:
    """A kubeconfig for a loopback server that answers GET of one expanded SchemaMigration."""
    body = json.dumps(
        {
            "apiVersion": "lockgate.dev/v1alpha1",
            "kind": "SchemaMigration",
            "metadata": {"namespace": namespace, "name": name, "resourceVersion": "1"},
            "status": {"appliedVersion": applied, "phase": "Ready"},
        }
    ).encode()
    path = f"/apis/lockgate.dev/v1alpha1/namespaces/{namespace}/schemamigrations/{name}"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (the stdlib's name)
            found = self.path.split("?")[0] == path
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if found else b'{"kind":"Status","code":404}')

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "stub", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
                    "users": [{"name": "stub", "user": {"token": "stub"}}],
                    "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
                    "current-context": "stub",
                }
            )
        )
        try:
            yield kubeconfig
        finally:
            server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--kubeconfig", help="a cluster with an expanded SchemaMigration (default: a loopback stub)")
    parser.add_argument("--namespace", default="bench")
    parser.add_argument("--name", default="shop")
    parser.add_argument("--version", default="1", help="the version wait requires")
    args = parser.parse_args()
    keep = ("PATH", "HOME", "PYTHONPATH")  # PYTHONPATH=<checkout>/operator times another checkout
    base = {name: os.environ[name] for name in keep if name in os.environ}
    bare = timed([sys.executable, "-c", "pass"], base, args.runs)
    print(f"{args.runs} runs each, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(row("python -c pass", bare, None))
    floor = statistics.median(bare[0])
    print(row("--version", timed([*lockgate(), "--version"], base, args.runs), floor))

    external = os.environ.get("LOCKGATE_TEST_DATABASE_URL")
    server = ExternalPostgres(external) if external else PostgresServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = base | {"LOCKGATE_DATABASE_URL": server.create_database(f"startup_{os.getpid()}")}
            print(row("exec -- true", timed([*lockgate(), "exec", "--", "true"], env, args.runs), floor))
            migrate_noops(env, Path(tmp), args.runs, floor)
    finally:
        server.stop()

    wait = [*lockgate(), "wait", "--namespace", args.namespace, "--name", args.name, "--version", args.version]
    with contextlib.ExitStack() as stack:
        kubeconfig = args.kubeconfig or stack.enter_context(stub_api(args.namespace, args.name, args.version))
        where = "cluster" if args.kubeconfig else "stub API"
        times = timed(wait, base | {"KUBECONFIG": str(kubeconfig)}, args.runs)
        print(row("wait (expanded)", times, floor) + f"  ({where})")


if __name__ == "__main__":
    main()

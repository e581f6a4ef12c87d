"""Benchmark: one SchemaMigration over many tenants, against a loop of `lockgate migrate`.

For --targets databases (one per tenant, each with its Secret), separately --targets schemas in one
database, listed in the spec, and --kinds query: as many schemas, listed by spec.targets.schemaQuery
(for 10,000: beyond a list's 1,000), on one PostgreSQL on this host: one expand of a few statements
per tenant, run
  - by the operator on the real node, once per --settings entry (maxParallel x perPod), each run
    with its own scripts and history table so that it starts from nothing: the time from the
    SchemaMigration created to its expand Job Complete, the operator's peak resident memory, and
    the size of the SchemaMigration's JSON at the end;
  - by a sequential loop of `lockgate migrate` from the host over the same targets (what a user
    would otherwise write), as the baseline.
The loop runs after the cluster stopped: it needs none, and the cluster's time is shared
(--loop-only runs only the loop, --no-loop only the cluster). Each line gives the host's load
average: the machine is shared, and other sessions' clusters slow both sides.

`make bench-fanout`, or `.venv/bin/python benchmarks/fanout.py [--targets 1000] [--kinds databases,schemas]
[--settings 8x10,8x50]`; with --kinds query a setting is maxParallel x indexes (`--targets 10000
--kinds query --settings 8x64 --no-loop`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from benchmarks.bench_cluster import cluster_with_operator, create_namespace  # noqa: E402
from benchmarks.operator_latency import rss_mib  # noqa: E402
from devcluster.kube import Kube, watch_until  # noqa: E402
from devcluster.node import POD_CIDR, host_node_ip  # noqa: E402
from devcluster.postgres import PostgresServer, in_cluster_url  # noqa: E402
from lockgate.controller.spec import GROUP, PLURAL, VERSION  # noqa: E402

NS = "fanout"
LISTING = "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\\_%'"
LOCKGATE = Path(sys.executable).parent / "lockgate"


def scripts(run: str) -> dict[str, str]:
    """One expand of a few statements; each run names its own tables, so it starts from nothing."""
    return {
        f"V1__{run}.sql": (
            f"CREATE TABLE {run}_items (id bigint PRIMARY KEY, name text NOT NULL);\n"
            f"CREATE INDEX {run}_items_name ON {run}_items (name);\n"
            f"ALTER TABLE {run}_items ADD COLUMN created timestamptz NOT NULL DEFAULT now();\n"
            f"INSERT INTO {run}_items (id, name) VALUES (1, 'first');\n"
        )
    }


class Tenants:
    """The targets of one kind: their names, and each one's URL and schema as the loop reaches them."""

    def __init__(self, postgres: PostgresServer, kind: str, count: int) -> None:
        self.kind = kind
        if kind in ("schemas", "query"):
            self.names = [f"tenant_{n:05}" for n in range(count)]
            url = postgres.create_database(kind)
            with psycopg.connect(url, autocommit=True) as conn:  # one round trip, one transaction
                conn.execute("".join(f"CREATE SCHEMA {name};" for name in self.names))
            self.urls = {name: url for name in self.names}
        else:
            self.names = [f"tenant-{n:04}-db" for n in range(count)]
            self.urls = {name: postgres.create_database(name.replace("-", "_")) for name in self.names}

    def loop(self, tmp: Path) -> float:
        """Seconds for `lockgate migrate` over every target, one after another."""
        directory = write_scripts(tmp / "loop", scripts("loop"))
        started = time.monotonic()
        for name in self.names:
            schema = ["--schema", name] if self.kind != "databases" else []
            command = [str(LOCKGATE), "migrate", "--dir", str(directory), "--history-table", "h_loop", *schema]
            subprocess.run(
                command, env=os.environ | {"LOCKGATE_DATABASE_URL": self.urls[name]}, check=True, capture_output=True
            )
        return time.monotonic() - started

    def prepare(self, kube: Kube, node_ip: str) -> None:
        if self.kind == "databases":
            for name in self.names:
                url = in_cluster_url(self.urls[name], node_ip)
                kube.core.create_namespaced_secret(NS, {"metadata": {"name": name}, "stringData": {"url": url}})
        else:
            url = in_cluster_url(self.urls[self.names[0]], node_ip)
            secret = {"metadata": {"name": f"{self.kind}-db"}, "stringData": {"url": url}}
            kube.core.create_namespaced_secret(NS, secret)

    def spec(self, max_parallel: int, per_pod: int) -> dict[str, Any]:
        """With a query, `per_pod` is its indexes: each pod migrates the schemas that shard to it."""
        parallel = {"maxParallel": max_parallel, "perPod": per_pod}
        database = {"database": {"urlFrom": {"secretKeyRef": {"name": f"{self.kind}-db", "key": "url"}}}}
        if self.kind == "query":
            return database | {
                "targets": {"schemaQuery": {"sql": LISTING, "indexes": per_pod}, "maxParallel": max_parallel}
            }
        if self.kind == "schemas":
            return database | {"targets": {"schemas": self.names, **parallel}}
        return {"targets": {"databases": {"secrets": self.names}, **parallel}}


def write_scripts(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


class PeakMemory:
    """The operator's highest resident memory, sampled every half second."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.running = pid, rss_mib(pid), True
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.5)

    def stop(self) -> float:
        self.running = False
        return max(self.peak, rss_mib(self.pid))


def fan_out(
    kube: Kube, pid: int, tenants: Tenants, run: str, max_parallel: int, per_pod: int
) -> tuple[float, float, int, int]:
    """Seconds from created to every target expanded, peak operator RSS (MiB), and the final
    object's size and its status's (bytes, as JSON: the object with its managedFields)."""
    files = scripts(run)
    kube.core.create_namespaced_config_map(NS, {"metadata": {"name": run}, "data": files})
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SchemaMigration",
        "metadata": {"name": run},
        "spec": {
            "version": "1",
            "image": "lockgate:dev",
            "migrations": {"configMap": {"name": run}},
            "background": {"enabled": False},
            "contract": {"enabled": False},
            "env": [{"name": "LOCKGATE_HISTORY_TABLE", "value": f"h_{run}"}],
            **tenants.spec(max_parallel, per_pod),
        },
    }
    memory = PeakMemory(pid)
    started = time.monotonic()
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
    done = watch_until(
        kube.custom.list_namespaced_custom_object,
        lambda b: (b.get("status") or {}).get("phase") in ("Complete", "Failed"),
        timeout=3600,
        group=GROUP,
        version=VERSION,
        namespace=NS,
        plural=PLURAL,
        field_selector=f"metadata.name={run}",
    )
    seconds, peak = time.monotonic() - started, memory.stop()
    if done["status"]["phase"] != "Complete":
        raise RuntimeError(f"{run} failed: {json.dumps(done['status'])[:2000]}")
    time.sleep(3)  # the last status write (history, counts) lands
    final = kube.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, run)
    counted = final["status"]["targets"]["phases"]["expand"]["succeeded"]
    if counted != len(tenants.names):  # a query's count is its pods' reports: all of them, once each
        raise RuntimeError(f"{run}: status.targets counts {counted} expanded, not {len(tenants.names)}")
    return seconds, peak, size(final), size(final["status"])


def size(document: Any) -> int:
    return len(json.dumps(document, separators=(",", ":")).encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--kinds", default="databases,schemas")
    parser.add_argument("--settings", default="8x10,8x50", help="maxParallel x perPod, comma-separated")
    parser.add_argument("--no-loop", action="store_true", help="skip the baseline loop")
    parser.add_argument("--loop-only", action="store_true", help="only the baseline loop: no cluster")
    args = parser.parse_args()
    settings = [tuple(map(int, s.split("x"))) for s in args.settings.split(",")]
    with tempfile.TemporaryDirectory(prefix="lockgate-fanout-") as tmp:
        postgres = PostgresServer(pod_access=(host_node_ip(), POD_CIDR)).start()
        try:
            kinds = [Tenants(postgres, kind, args.targets) for kind in args.kinds.split(",")]
            fanned = {} if args.loop_only else on_the_cluster(Path(tmp), kinds, settings)
            for tenants in [] if args.no_loop else kinds:
                seconds = tenants.loop(Path(tmp) / tenants.kind)
                versus = ", ".join(f"{seconds / s:.1f}x slower than {run}" for run, s in fanned.get(tenants.kind, []))
                print(
                    f"{tenants.kind}: loop of lockgate migrate over {args.targets} from the host: {seconds:.1f} s"
                    f"{'; ' + versus if versus else ''} (load average {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
        finally:
            postgres.stop()


def on_the_cluster(
    tmp: Path, kinds: list[Tenants], settings: list[tuple[int, ...]]
) -> dict[str, list[tuple[str, float]]]:
    """Each kind at each setting, printed as it finishes; the seconds each took, by kind."""
    fanned: dict[str, list[tuple[str, float]]] = {}
    with cluster_with_operator(tmp) as bench:
        create_namespace(bench.kube, NS)
        print(f"operator at start: {rss_mib(bench.operator.pid):.0f} MiB RSS", flush=True)
        for tenants in kinds:
            tenants.prepare(bench.kube, bench.cluster.node_ip)
            for max_parallel, per_pod in settings:
                run = f"{tenants.kind[0]}{max_parallel}x{per_pod}"
                seconds, peak, whole, status = fan_out(
                    bench.kube, bench.operator.pid, tenants, run, max_parallel, per_pod
                )
                shape = f"maxParallel {max_parallel} {'indexes' if tenants.kind == 'query' else 'perPod'} {per_pod}"
                fanned.setdefault(tenants.kind, []).append((shape, seconds))
                print(
                    f"{tenants.kind}: {len(tenants.names)} targets, {shape}: "
                    f"all expanded in {seconds:.1f} s; operator peak {peak:.0f} MiB RSS; "
                    f"SchemaMigration {whole / 1024:.1f} KiB, its status {status / 1024:.1f} KiB "
                    f"(load average {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
    return fanned


if __name__ == "__main__":
    main()

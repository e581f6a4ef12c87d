"""Benchmark: how fast the operator reacts, and how much memory it needs.

Prints medians (and p90) over --runs runs of:
  applied -> Job created            SchemaMigration created -> its expand Job exists
  Job succeeded -> gate True        expand Job Complete -> a waiting pod's gate condition True
  rollout complete -> contract Job  gated Deployment rolled out -> contract Job exists
then creates --many SchemaMigrations at once, spread over --namespaces namespaces, and prints
the operator's resident memory before and after them, the time until all are Ready, how long
each took from its Job finished to Ready (median, p90), and the operator's CPU over --idle
seconds once all is quiet.

Starts its own control plane (the test harness), PostgreSQL and one operator for all namespaces.
Run with `make bench-operator` or
`.venv/bin/python benchmarks/operator_latency.py [--runs 20] [--many 1000] [--namespaces 50]`;
`--runs 0` measures only the SchemaMigrations created at once.
All times are observed through watches by this process, as a user would see them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import watch  # noqa: E402

from benchmarks.bench_cluster import cluster_with_operator, create_namespace  # noqa: E402
from devcluster.kube import Kube, deployment_rolled_out, watch_until  # noqa: E402
from devcluster.node import POD_CIDR  # noqa: E402
from devcluster.postgres import PostgresServer, in_cluster_url  # noqa: E402
from devcluster.processes import ManagedProcess  # noqa: E402
from devcluster.workloads import condition, gated_deployment, require_version  # noqa: E402
from lockgate.controller.spec import GATE_CONDITION, GROUP, OWNER_ANNOTATION, OWNER_LABEL, PLURAL, VERSION  # noqa: E402

NS = "bench"


class Clock:
    """First time each (kind, name, what) was seen through a watch."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.seen: dict[tuple[str, str, str], float] = {}
        self.changed = threading.Condition()

    def start(self) -> Clock:
        for target in (self._jobs, self._pods, self._deployments):
            threading.Thread(target=self._follow, args=(target,), daemon=True).start()
        return self

    def mark(self, key: tuple[str, str, str]) -> None:
        with self.changed:
            self.seen.setdefault(key, time.monotonic())
            self.changed.notify_all()

    def wait(self, key: tuple[str, str, str], timeout: float = 120) -> float:
        with self.changed:
            if not self.changed.wait_for(lambda: key in self.seen, timeout):
                raise TimeoutError(f"never saw {key}")
            return self.seen[key]

    def _follow(self, handle: Any) -> None:
        lister, on_event = handle()
        try:
            while True:
                for event in watch.Watch().stream(lister, NS, timeout_seconds=300):
                    on_event(event["object"])
        except Exception:  # the control plane stopped at the end of the run
            return

    def _jobs(self) -> tuple[Any, Any]:
        def on_job(job: Any) -> None:
            self.mark(("job", job.metadata.name, "created"))
            if any(c.type == "Complete" and c.status == "True" for c in job.status.conditions or []):
                self.mark(("job", job.metadata.name, "complete"))

        return self.kube.batch.list_namespaced_job, on_job

    def _pods(self) -> tuple[Any, Any]:
        def on_pod(pod: Any) -> None:
            if any(c.type == GATE_CONDITION and c.status == "True" for c in pod.status.conditions or []):
                self.mark(("pod", pod.metadata.name, "gate"))

        return self.kube.core.list_namespaced_pod, on_pod

    def _deployments(self) -> tuple[Any, Any]:
        def on_deployment(d: Any) -> None:
            if deployment_rolled_out(d):
                self.mark(("deployment", d.metadata.name, f"rolled-out-{d.metadata.generation}"))

        return self.kube.apps.list_namespaced_deployment, on_deployment


def smig(name: str, config_map: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SchemaMigration",
        "metadata": {"name": name},
        "spec": {
            "version": "1",
            "image": "lockgate:dev",
            "database": {
                "urlFrom": {"secretKeyRef": {"name": "db", "key": "url"}},
                "historyTable": f"h_{name.replace('-', '_')}",
            },
            "migrations": {"configMap": {"name": config_map}},
            **spec,
        },
    }


def one_run(kube: Kube, clock: Clock, i: int) -> tuple[float, float, float]:
    name = f"run{i}"
    kube.apps.create_namespaced_deployment(NS, gated_deployment(f"{name}-web", name, "0", replicas=1))
    created = time.monotonic()
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, smig(name, "scripts"))
    job = watch_until(
        kube.batch.list_namespaced_job,
        lambda j: j.metadata.labels.get("lockgate.dev/phase") == "expand",
        namespace=NS,
        label_selector=f"lockgate.dev/schemamigration={name}",
    )
    applied_to_job = clock.wait(("job", job.metadata.name, "created")) - created
    pod = watch_until(kube.core.list_namespaced_pod, lambda p: True, namespace=NS, label_selector=f"app={name}-web")
    gate_after_job = clock.wait(("pod", pod.metadata.name, "gate")) - clock.wait(("job", job.metadata.name, "complete"))
    watch_until(
        kube.custom.list_namespaced_custom_object,
        lambda b: (b.get("status") or {}).get("backgroundVersion") == "1",
        group=GROUP,
        version=VERSION,
        namespace=NS,
        plural=PLURAL,
        field_selector=f"metadata.name={name}",
    )
    patched = require_version(kube, NS, f"{name}-web", "1")
    rolled = clock.wait(("deployment", f"{name}-web", f"rolled-out-{patched.metadata.generation}"))
    contract = watch_until(
        kube.batch.list_namespaced_job,
        lambda j: j.metadata.labels.get("lockgate.dev/phase") == "contract",
        namespace=NS,
        label_selector=f"lockgate.dev/schemamigration={name}",
    )
    return applied_to_job, gate_after_job, clock.wait(("job", contract.metadata.name, "created")) - rolled


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident memory now (VmRSS), or the most it has been (VmHWM, the peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def report(label: str, values: list[float]) -> None:
    print(
        f"{label:<34} median {statistics.median(values) * 1000:7.0f} ms   p90 {percentile(values, 0.9) * 1000:7.0f} ms   max {max(values) * 1000:7.0f} ms   (n={len(values)})"
    )


def prepare_namespace(kube: Kube, namespace: str, database_url: str) -> None:
    """A namespace with the database Secret and the scripts ConfigMap the SchemaMigrations name."""
    create_namespace(kube, namespace)
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": "db"}, "stringData": {"url": database_url}})
    kube.core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {"name": "scripts"},
            "data": {"V1__t.sql": "SELECT 1;", "A1__b.sql": "SELECT 1;", "C1__c.sql": "SELECT 1;"},
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--many", type=int, default=200)
    parser.add_argument("--namespaces", type=int, default=1, help="spread the --many SchemaMigrations over this many")
    parser.add_argument("--idle", type=int, default=60, help="seconds over which to measure idle CPU at the end")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lockgate-bench-") as tmp, cluster_with_operator(Path(tmp)) as bench:
        kube, operator = bench.kube, bench.operator
        postgres = PostgresServer(pod_access=(bench.cluster.node_ip, POD_CIDR)).start()
        try:
            database_url = in_cluster_url(postgres.create_database("bench"), bench.cluster.node_ip)
            spread = [f"bench-{n}" for n in range(args.namespaces)] if args.namespaces > 1 else []
            for namespace in [NS, *spread]:
                prepare_namespace(kube, namespace, database_url)
            clock = Clock(kube).start()
            idle = rss_mib(operator.pid)
            print(f"operator memory at start, nothing to do: {idle:.0f} MiB RSS")
            samples = defaultdict(list)
            for i in range(args.runs):
                for label, value in zip(
                    ("applied -> Job created", "Job succeeded -> gate True", "rollout complete -> contract Job"),
                    one_run(kube, clock, i),
                    strict=True,
                ):
                    samples[label].append(value)
            if args.runs:
                print(
                    f"operator latencies over {args.runs} runs (control plane, real node, PostgreSQL and operator on one 2-core machine):"
                )
            for label, values in samples.items():
                report(label, values)
            many(kube, operator, args.many, spread or [NS], args.runs)
            idle_cpu(operator, args.idle)
        finally:
            postgres.stop()


class Scale:
    """When each SchemaMigration first turned Ready, and when its expand Job was first seen Complete."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.ready: dict[tuple[str, str], float] = {}
        self.job_done: dict[tuple[str, str], float] = {}
        self.changed = threading.Condition()

    def start(self) -> Scale:
        threading.Thread(target=self._follow, args=(self._migrations,), daemon=True).start()
        threading.Thread(target=self._follow, args=(self._jobs,), daemon=True).start()
        return self

    def _follow(self, lister: Any) -> None:
        """Raw JSON events (no client models: this process must not take the operator's CPU)."""
        try:
            while True:
                for event in watch.Watch(return_type="object").stream(lister(), timeout_seconds=300):
                    self._seen(event["object"], lister)
        except Exception:  # the control plane stopped at the end of the run
            return

    def _seen(self, body: dict[str, Any], lister: Any) -> None:
        meta = body["metadata"]
        if lister == self._migrations:
            key, done, into = (
                (meta["namespace"], meta["name"]),
                condition(body, "Ready").get("status") == "True",
                self.ready,
            )
        else:
            owner = (meta.get("annotations") or {}).get(OWNER_ANNOTATION) or meta["labels"][OWNER_LABEL]
            done = any(
                c["type"] == "Complete" and c["status"] == "True"
                for c in (body.get("status") or {}).get("conditions") or []
            )
            key, into = (meta["namespace"], owner), self.job_done
        if done:
            with self.changed:
                into.setdefault(key, time.monotonic())
                self.changed.notify_all()

    def _migrations(self) -> Any:
        return lambda **kw: self.kube.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kw)

    def _jobs(self) -> Any:
        return lambda **kw: self.kube.batch.list_job_for_all_namespaces(label_selector=OWNER_LABEL, **kw)

    def wait_ready(self, keys: set[tuple[str, str]], timeout: float) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: keys <= self.ready.keys(), timeout):
                raise TimeoutError(f"{len(keys - self.ready.keys())} of {len(keys)} SchemaMigrations never Ready")


def many(kube: Kube, operator: ManagedProcess, count: int, namespaces: list[str], earlier: int) -> None:
    """`count` SchemaMigrations at once, round-robin over `namespaces` (each expanded once: background
    and contract off to keep it quick): memory, time to all Ready, and Job finished -> Ready."""
    scale = Scale(kube).start()
    before = rss_mib(operator.pid)
    keys = set()
    started = time.monotonic()
    for i in range(count):
        namespace = namespaces[i % len(namespaces)]
        kube.custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            smig(f"many{i}", "scripts", background={"enabled": False}, contract={"enabled": False}),
        )
        keys.add((namespace, f"many{i}"))
    scale.wait_ready(keys, timeout=3600)
    print(
        f"{count} more SchemaMigrations in {len(namespaces)} namespace(s) all Ready {time.monotonic() - started:.0f}s after the first was created (their Jobs really run the runner)"
    )
    with scale.changed:
        lags = [scale.ready[k] - scale.job_done[k] for k in keys if k in scale.job_done]
    report("Job finished -> Ready", lags)
    print(
        f"operator memory: {before:.0f} MiB RSS before them, {rss_mib(operator.pid):.0f} MiB RSS with {count + earlier} SchemaMigrations, their Jobs, pods and Deployments indexed (peak {rss_mib(operator.pid, 'VmHWM'):.0f} MiB)"
    )


def idle_cpu(operator: ManagedProcess, seconds: int) -> None:
    """CPU the operator uses with everything Ready and nothing changing."""
    time.sleep(10)  # the last status writes and their watch events settle
    used = cpu_seconds(operator.pid)
    time.sleep(seconds)
    print(
        f"operator idle: {cpu_seconds(operator.pid) - used:.2f} s CPU over {seconds} s, {rss_mib(operator.pid):.0f} MiB RSS (peak {rss_mib(operator.pid, 'VmHWM'):.0f} MiB)"
    )


if __name__ == "__main__":
    main()

"""`make demo`: lockgate end to end on this machine, narrated.

Starts the local cluster (kube-apiserver, etcd, controller-manager, scheduler, and a real node:
kubelet, kube-proxy, containerd running the images built from the Dockerfile and examples/shop),
a throwaway PostgreSQL and the operator; installs examples/shop release 1, then moves to
release 2 under steady traffic at the shop's Service, and shows each step as it happens:
expand Job -> gate opens -> rollout -> contract Job, then how many requests were served and
how many failed. Cleans up after itself (the host too) and exits 0, or exits 1 keeping the logs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devcluster.binaries import cluster_bin_dir  # noqa: E402
from devcluster.clusters import TEST_IMAGE, LocalCluster  # noqa: E402
from devcluster.images.targets import build_images  # noqa: E402
from devcluster.kube import Kube  # noqa: E402
from devcluster.node import POD_CIDR  # noqa: E402
from devcluster.postgres import PostgresServer, in_cluster_url  # noqa: E402
from devcluster.processes import ManagedProcess  # noqa: E402
from devcluster.shop import Shop, Traffic, TrafficReport  # noqa: E402
from devcluster.workloads import operator_command  # noqa: E402
from lockgate.cli.status_view import progress_bar, render  # noqa: E402
from lockgate.controller.spec import GATE_CONDITION, GROUP, PLURAL, VERSION  # noqa: E402

NS = "shop"
EXAMPLE = REPO / "examples" / "shop"
STAGE_TIMEOUT = 240
STARTED = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {text}", flush=True)


class Demo:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.cluster: LocalCluster | None = None
        self.postgres: PostgresServer | None = None
        self.operator: ManagedProcess | None = None
        self.kube: Kube | None = None
        self.shop: Shop | None = None
        self.kubectl_path = ""
        self.seen: set[str] = set()
        self.traffic: TrafficReport | None = None

    def run(self) -> None:
        shop = self.start()
        say("release 1: the SchemaMigration (version 1), the gated Deployment of the shop app and its Service")
        shop.install(self.database_url_for_pods())
        self.follow(lambda: shop.released("1"))
        host, port = shop.service_address()
        say(f"steady traffic at the shop's Service ({host}:{port}): reads and writes, 20 a second")
        traffic = Traffic(host, port).start()
        say("release 2: the SchemaMigration moves to version 2 first, then the app (as an Argo CD sync wave would)")
        shop.move_to("2")
        self.follow(lambda: shop.released("2"))
        self.traffic = traffic.stop()
        say(f"traffic during the release: {self.traffic.summary()}")
        self.summary()
        if self.traffic.failed:
            raise RuntimeError(f"{self.traffic.failed} requests failed during the release")

    def start(self) -> Shop:
        say("building or reusing the binaries (the first run builds Kubernetes and containerd from source: minutes)")
        bin_dir = cluster_bin_dir()
        self.kubectl_path = str(bin_dir / "kubectl")
        say("building or reusing the images (the Dockerfile with buildah on a Debian base made with mmdebstrap)")
        images = build_images()
        say(
            "starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd, kubelet and kube-proxy"
        )
        self.cluster = LocalCluster(self.workdir / "cluster", bin_dir=bin_dir).start(images)
        self.kube = Kube.from_kubeconfig(self.cluster.kubeconfig)
        say(
            f"cluster up in {self.cluster.startup_seconds:.1f}s, node {self.cluster.node_name} at {self.cluster.node_ip}"
        )
        for line in self.kubectl("get", "nodes", "-o", "wide", namespaced=False, quiet=True).splitlines():
            say(f"  {line}")
        say("starting PostgreSQL")
        self.postgres = PostgresServer(pod_access=(self.cluster.node_ip, POD_CIDR)).start()
        self.postgres.create_database("shop")
        self.kubectl("apply", "-f", str(REPO / "crds"))
        self.kubectl("wait", "--for=condition=Established", "crd/schemamigrations.lockgate.dev", namespaced=False)
        command = operator_command(NS)
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)}
        self.operator = ManagedProcess(
            "operator", command, self.workdir / "operator.log", env=env, cwd=REPO, die_with_parent=True
        ).start()
        say(f"operator running (log: {self.workdir / 'operator.log'})")
        self.kubectl("create", "namespace", NS, namespaced=False)
        self.kubectl("wait", "--for=jsonpath={.metadata.name}=default", "serviceaccount/default", "--timeout=60s")
        say(
            "the database URL goes in Secrets shop-db and shop-app-db; both releases' scripts in ConfigMap shop-migrations"
        )
        self.shop = Shop(self.kube, NS, TEST_IMAGE, "lockgate-shop:dev")
        return self.shop

    def database_url_for_pods(self) -> str:
        assert self.postgres is not None and self.cluster is not None
        return in_cluster_url(self.postgres.url_for("shop"), self.cluster.node_ip)

    def kubectl(self, *args: str, namespaced: bool = True, quiet: bool = False) -> str:
        assert self.cluster is not None
        command = [
            self.kubectl_path,
            "--kubeconfig",
            str(self.cluster.kubeconfig),
            *(["-n", NS] if namespaced else []),
            *args,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {args[0]} failed: {done.stderr.strip()}")
        if not quiet and done.stdout.strip():
            for line in done.stdout.strip().splitlines():
                say(f"  kubectl: {line}")
        return done.stdout

    # narration

    def follow(self, finished: Callable[[], bool]) -> None:
        deadline = time.monotonic() + STAGE_TIMEOUT
        while not finished():
            self.narrate()
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing finished within {STAGE_TIMEOUT}s")
            time.sleep(0.25)
        self.narrate()

    def narrate(self) -> None:
        for fact in self.facts():
            if fact not in self.seen:
                self.seen.add(fact)
                say(fact)

    def facts(self) -> list[str]:
        smig, pods, deployment = self.state()
        status = (smig or {}).get("status") or {}
        facts = [
            f"SchemaMigration shop: version {smig['spec']['version']}, phase {status['phase']}"
            for _ in [0]
            if smig and status.get("phase")
        ]
        if progress := status.get("progress"):
            facts.append(
                f"background {progress['script']}: {progress_bar(progress.get('percent'))} {progress['summary']}"
            )
        for entry in status.get("history") or []:
            facts.append(f"{entry['phase']} Job {entry['job']} created (version {entry['version']})")
            if entry["result"] != "Running":
                applied = f", {entry['applied']} migration(s) applied" if entry.get("applied") is not None else ""
                error = f": {entry['error']}" if entry.get("error") else ""
                facts.append(f"{entry['phase']} Job {entry['job']} {entry['result'].lower()}{applied}{error}")
        for pod in pods:
            gate = next((c for c in pod.status.conditions or [] if c.type == GATE_CONDITION), None)
            needs = (pod.metadata.annotations or {}).get("lockgate.dev/requires-version")
            if gate is not None:
                state = "open" if gate.status == "True" else f"closed ({gate.reason})"
                facts.append(f"gate {state} for pod {pod.metadata.name} (requires schema {needs})")
        if deployment is not None:
            s = deployment.status
            facts.append(
                f"Deployment shop-web: {s.updated_replicas or 0}/{deployment.spec.replicas} updated, {s.available_replicas or 0} available, {s.replicas or 0} running"
            )
        return facts

    def state(self) -> tuple[dict[str, Any] | None, list[Any], Any]:
        assert self.kube is not None
        try:
            smig = self.kube.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "shop")
        except Exception:
            smig = None
        pods = self.kube.core.list_namespaced_pod(NS, label_selector="app=shop-web").items
        deployments = self.kube.apps.list_namespaced_deployment(NS, field_selector="metadata.name=shop-web").items
        return smig, pods, deployments[0] if deployments else None

    def summary(self) -> None:
        smig, _, _ = self.state()
        say("done: both releases rolled out through the gate, each phase ran exactly once")
        if self.traffic:
            print("\n--- traffic at the shop's Service during release 1 -> 2 " + "-" * 12)
            print(f"served {self.traffic.served}, failed {self.traffic.failed}")
        print("\n--- lockgate status -n shop " + "-" * 40)
        for line in render(smig):
            print(line)
        print("\n--- kubectl get smig " + "-" * 47)
        print(self.kubectl("get", "smig", quiet=True).rstrip())
        assert self.postgres is not None
        print("\n--- lockgate info (the history table in PostgreSQL) " + "-" * 16)
        info = subprocess.run(
            [sys.executable, "-m", "lockgate", "info", "--dir", str(EXAMPLE / "migrations")],
            capture_output=True,
            text=True,
            env={**os.environ, "LOCKGATE_DATABASE_URL": self.postgres.url_for("shop")},
        )
        print(info.stdout.rstrip())
        print(f"\nfinished in {time.monotonic() - STARTED:.0f}s")

    def stop(self) -> None:
        if self.operator:
            self.operator.stop()
        if self.kube:
            self.kube.close()
        if self.cluster:
            self.cluster.stop()
        if self.postgres:
            self.postgres.stop()


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="lockgate-demo-"))
    demo = Demo(workdir)
    try:
        demo.run()
    except (RuntimeError, TimeoutError) as exc:
        say(f"demo failed: {exc}")
        if demo.operator:
            print(demo.operator.log_tail(40))
        say(f"logs kept in {workdir}")
        demo.stop()
        return 1
    except KeyboardInterrupt:
        demo.stop()
        return 130
    demo.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make demo`: lockgate end to end on this machine, narrated.

Starts the local control plane (the test harness: kube-apiserver, etcd, controller-manager,
scheduler and a node agent that really runs lockgate's migration pods), a throwaway
PostgreSQL and the operator; applies examples/shop release 1, then release 2, and shows
each step as it happens: expand Job -> gate opens -> rollout -> contract Job. Cleans up
after itself and exits 0, or exits 1 keeping the logs when something goes wrong.
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

from lockgate.cli.status_view import render  # noqa: E402
from lockgate.controller.spec import GATE_CONDITION, GROUP, PLURAL, VERSION  # noqa: E402
from tests.cluster.binaries import cluster_bin_dir  # noqa: E402
from tests.cluster.clusters import LocalCluster  # noqa: E402
from tests.cluster.kube import Kube, deployment_rolled_out  # noqa: E402
from tests.cluster.processes import ManagedProcess  # noqa: E402
from tests.operator_fixtures import operator_command  # noqa: E402
from tests.postgres import PostgresServer  # noqa: E402

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
        self.kubectl_path = ""
        self.seen: set[str] = set()

    def run(self) -> None:
        self.start()
        say("release 1: applying the SchemaMigration (version 1) and the gated Deployment")
        self.kubectl("apply", "-f", str(EXAMPLE / "schemamigration.yaml"), "-f", str(EXAMPLE / "deployment.yaml"))
        self.follow(lambda: self.done("1"))
        say("release 2: the SchemaMigration moves to version 2 first, then the app (as an Argo CD sync wave would)")
        self.kubectl("patch", "smig", "shop", "--type", "merge", "-p", '{"spec":{"version":"2"}}')
        self.kubectl(
            "patch",
            "deployment",
            "shop-web",
            "-p",
            '{"spec":{"template":{"metadata":{"annotations":{"lockgate.dev/requires-version":"2"}}}}}',
        )
        self.follow(lambda: self.done("2"))
        self.summary()

    def start(self) -> None:
        say(
            "building or reusing the control-plane binaries (the first run builds Kubernetes from source: several minutes)"
        )
        bin_dir = cluster_bin_dir()
        self.kubectl_path = str(bin_dir / "kubectl")
        say("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the node agent")
        self.cluster = LocalCluster(self.workdir / "cluster", bin_dir=bin_dir).start()
        self.kube = Kube.from_kubeconfig(self.cluster.kubeconfig)
        say(f"control plane up in {self.cluster.startup_seconds:.1f}s; starting PostgreSQL")
        self.postgres = PostgresServer().start()
        url = self.postgres.create_database("shop")
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
        self.kubectl("create", "secret", "generic", "shop-db", f"--from-literal=url={url}", quiet=True)
        self.kubectl("create", "configmap", "shop-migrations", f"--from-file={EXAMPLE / 'migrations'}")
        say("the database URL is in Secret shop-db; the scripts of both releases are in ConfigMap shop-migrations")

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

    def done(self, version: str) -> bool:
        smig, _, deployment = self.state()
        status = (smig or {}).get("status") or {}
        if status.get("phase") == "Failed":
            raise RuntimeError("the SchemaMigration failed: " + " / ".join(render(smig)))
        rolled_out = deployment is not None and deployment_rolled_out(deployment)
        return status.get("contractedVersion") == version and status.get("phase") == "Complete" and rolled_out

    def summary(self) -> None:
        smig, _, _ = self.state()
        say("done: both releases rolled out through the gate, each phase ran exactly once")
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

"""A real Argo CD against a cluster: its application controller and repo-server (hack/argocd, built
by hack/build-argocd.sh) and the Redis they cache in, as host processes on free loopback ports, with
Argo CD's CRDs, the settings it reads (argocd-cm carrying lockgate's health check from
deploy/argocd/) and the `default` AppProject. No API server: Applications are created directly.

The controller reaches the cluster through KUBECONFIG (ARGOCD_FAKE_IN_CLUSTER makes the in-cluster
destination, https://kubernetes.default.svc, use it) and the repo-server clones file:// repositories.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from devcluster.binaries import REPO
from devcluster.controlplane import url_ok
from devcluster.kube import Kube, watch_until
from devcluster.postgres import free_port
from devcluster.processes import ComponentError, ManagedProcess, wait_until_ready

BUILD_SCRIPT = REPO / "hack" / "build-argocd.sh"
ARGOCD_CM = REPO / "deploy" / "argocd" / "argocd-cm.yaml"
NAMESPACE = "argocd"
GROUP, VERSION, APPLICATIONS = "argoproj.io", "v1alpha1", "applications"
START_TIMEOUT = 90.0
# Debian's redis-tools ships the server as redis-check-rdb; the binary serves when called redis-server
# (the redis-server package only adds a system service, which would outlive the tests).
REDIS_BINARIES = ("redis-server", "/usr/bin/redis-check-rdb")


def argocd_binary() -> Path:
    """The cached build (a warm cache builds nothing); its CRDs sit beside it in crds/."""
    result = subprocess.run([str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=True)
    return Path(result.stdout.strip().splitlines()[-1])


def redis_server(directory: Path) -> Path:
    """A path to Redis's server binary whose name makes it serve."""
    found = next((Path(p) for p in map(shutil.which, REDIS_BINARIES) if p), None)
    if found is None:
        raise ComponentError("Redis not found: apt-get install -y redis-tools (make argocd-bin does)")
    if found.name == "redis-server":
        return found
    link = directory / "redis-server"
    link.unlink(missing_ok=True)
    link.symlink_to(found)
    return link


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def settings() -> list[dict[str, Any]]:
    """What the controller reads besides its CRDs: argocd-cm with lockgate's health check (the file
    teams merge), argocd-secret, and the `default` project that the API server would otherwise create."""
    cm = yaml.safe_load(ARGOCD_CM.read_text())
    labels = {"app.kubernetes.io/part-of": "argocd"}  # the controller's informers select on it
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "argocd-secret", "namespace": NAMESPACE, "labels": labels},
        "stringData": {"server.secretkey": secrets.token_urlsafe(32)},
    }
    everything = [{"group": "*", "kind": "*"}]
    project = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AppProject",
        "metadata": {"name": "default", "namespace": NAMESPACE},
        "spec": {
            "sourceRepos": ["*"],
            "destinations": [{"server": "*", "namespace": "*"}],
            "clusterResourceWhitelist": everything,
        },
    }
    return [cm, secret, project]


class ArgoCD:
    """Redis, the repo-server and the application controller for one cluster; `stop` ends them all."""

    def __init__(self, directory: Path, kube: Kube, kubeconfig: Path, kubectl: Path) -> None:
        self.directory = directory
        self.kube = kube
        self.kubeconfig = kubeconfig
        self.kubectl = kubectl
        self.processes: list[ManagedProcess] = []

    def start(self) -> ArgoCD:
        binary = argocd_binary()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._install(binary.parent / "crds")
        redis, repo_server, repo_metrics, controller_metrics = (free_port() for _ in range(4))
        (self.directory / "tmp").mkdir(exist_ok=True)
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "ARGOCD_FAKE_IN_CLUSTER": "true",
            "ARGOCD_GPG_ENABLED": "false",  # no signed commits to verify; it would need gpg and a keyring
            # Clones and the askpass socket under our directory, not /tmp: gone with it.
            "TMPDIR": str(self.directory / "tmp"),
            "ARGOCD_ASK_PASS_SOCK": str(self.directory / "askpass.sock"),
        }
        try:
            self._launch("redis", [str(redis_server(self.directory)), *self._redis_args(redis)], env, redis)
            common = ["--redis", f"127.0.0.1:{redis}", "--logformat", "text"]
            self._launch(
                "argocd-repo-server",
                [str(binary), "repo-server", "--address", "127.0.0.1", "--port", str(repo_server), "--disable-tls"]
                + ["--metrics-address", "127.0.0.1", "--metrics-port", str(repo_metrics), *common],
                env,
                repo_metrics,
            )
            self._launch(
                "argocd-application-controller",
                [str(binary), "application-controller", "--namespace", NAMESPACE, "--metrics-port"]
                + [str(controller_metrics), "--repo-server", f"127.0.0.1:{repo_server}", "--repo-server-plaintext"]
                + ["--status-processors", "4", "--operation-processors", "4", *common]
                # Each resource's health in the Application's status, where the tests read it (Argo CD 3
                # keeps it only in its resource tree, which its API server serves; none runs here).
                + ["--persist-resource-health"],
                env,
                controller_metrics,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def _redis_args(self, port: int) -> list[str]:
        # A cache only: nothing saved, nothing left behind.
        return ["--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"] + [
            "--dir",
            str(self.directory),
        ]

    def _launch(self, name: str, argv: list[str], env: dict[str, str], port: int) -> None:
        log = self.directory / "logs" / f"{name}.log"
        process = ManagedProcess(name, argv, log, env=env, cwd=self.directory, die_with_parent=True).start()
        self.processes.append(process)
        ready: Callable[[], bool] = (
            (lambda: port_open(port))
            if name == "redis"
            else (lambda: url_ok(f"http://127.0.0.1:{port}/healthz?full=true"))
        )
        wait_until_ready(process, ready, START_TIMEOUT)

    def _install(self, crds: Path) -> None:
        """Argo CD's CRDs (the Application CRD is over client-side apply's annotation limit, so all
        server-side), then its namespace, settings and project."""
        definitions = [yaml.safe_load(p.read_text()) for p in sorted(crds.glob("*.yaml"))]
        self._apply(definitions)
        for definition in definitions:
            watch_until(
                self.kube.apiextensions.list_custom_resource_definition,
                lambda c: any(x.type == "Established" and x.status == "True" for x in c.status.conditions or []),
                field_selector=f"metadata.name={definition['metadata']['name']}",
            )
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        self._apply([namespace, *settings()])

    def _apply(self, documents: list[dict[str, Any]]) -> None:
        manifest = yaml.safe_dump_all(documents)
        self._kubectl(
            "apply", "--server-side", "--force-conflicts", "--field-manager=devcluster", "-f", "-", stdin=manifest
        )

    def _kubectl(self, *args: str, stdin: str | None = None) -> None:
        command = [str(self.kubectl), "--kubeconfig", str(self.kubeconfig), *args]
        done = subprocess.run(command, input=stdin, capture_output=True, text=True)
        if done.returncode != 0:
            raise ComponentError(f"kubectl {args[0]} for Argo CD failed: {done.stderr.strip()}")


class Applications:
    """Applications in Argo CD's namespace, read and nudged through the Kubernetes API."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def create(self, body: dict[str, Any]) -> None:
        self.kube.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, APPLICATIONS, body)

    def get(self, name: str) -> dict[str, Any]:
        return self.kube.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, APPLICATIONS, name)

    def refresh(self, name: str) -> None:
        """What Argo CD's Git webhook does on a push: read the branch again now, not at the next poll."""
        patch = {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}}
        self.kube.custom.patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, APPLICATIONS, name, patch)

    def delete(self, name: str) -> None:
        self.kube.custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, APPLICATIONS, name)


def synced(app: dict[str, Any], revision: str) -> bool:
    """The last sync of `revision` finished and left the app Synced and Healthy."""
    status = app.get("status") or {}
    operation = status.get("operationState") or {}
    return (
        operation.get("phase") == "Succeeded"
        and (operation.get("syncResult") or {}).get("revision") == revision
        and (status.get("sync") or {}).get("status") == "Synced"
        and (status.get("sync") or {}).get("revision") == revision
        and (status.get("health") or {}).get("status") == "Healthy"
    )


def resource_status(app: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    """One managed resource's sync and health as the app's status lists it."""
    resources = (app.get("status") or {}).get("resources") or []
    return next((r for r in resources if r.get("kind") == kind and r.get("name") == name), {})


class GitRepo:
    """A local repository the repo-server clones through file://, one commit per release."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self._git("init", "--quiet", "--initial-branch=main")

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def commit(self, files: dict[str, str], message: str) -> str:
        """Replace the tree's files with `files` (path -> text) and commit; returns the commit's SHA."""
        for old in self.path.rglob("*"):
            if old.is_file() and ".git" not in old.relative_to(self.path).parts:
                old.unlink()
        for relative, text in files.items():
            target = self.path / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        self._git("add", "--all")
        self._git("commit", "--quiet", "--allow-empty", "-m", message)
        return self._git("rev-parse", "HEAD").strip()

    def _git(self, *args: str) -> str:
        identity = ["-c", "user.name=lockgate tests", "-c", "user.email=tests@lockgate.dev"]
        done = subprocess.run(["git", *identity, *args], cwd=self.path, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"git {args[0]} failed: {done.stderr.strip()}")
        return done.stdout


def wait_app(
    apps: Applications, name: str, what: str, predicate: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    """Poll the Application until `predicate` holds; the timeout names its last status."""
    deadline = time.monotonic() + timeout
    while True:
        app = apps.get(name)
        if predicate(app):
            return app
        if time.monotonic() > deadline:
            raise TimeoutError(f"Application {name}, {what}: not within {timeout:.0f}s; status: {app.get('status')}")
        time.sleep(0.5)

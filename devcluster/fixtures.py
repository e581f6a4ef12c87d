"""pytest fixtures for tests against a real Kubernetes API (registered in tests/conftest.py).

- `cluster` (session): a LocalCluster started for the run (control plane + a real node, put
  back as the host was at the end, also after a failure or Ctrl-C), or the ExistingCluster named
  by LOCKGATE_TEST_KUBECONFIG. `.kubeconfig`, `.real_image` (lockgate's image), `.idle_image`.
- `kubeconfig` (session): the admin kubeconfig path.
- `audit_log` (session): the local kube-apiserver's audit log (JSON lines; what it records:
  controlplane.AUDIT_POLICY). An existing cluster's API server is not ours to configure, so a test
  that needs it skips there, saying why.
- `kube` (session): `Kube` clients (core, apps, batch, rbac, custom, apiextensions).
- `namespace`: a fresh namespace for one test (its `default` ServiceAccount and
  kube-root-ca.crt exist), deleted afterwards; `kube.temporary_namespace` for more.
- `start_operator(command, env=None, name="operator")`: start a process with KUBECONFIG
  set; returns a ManagedProcess (stop(), kill(), is_running, log). Stopped at teardown;
  a failed test's report carries the end of each log.
- `argocd` (session, on first use): Argo CD's application controller, repo-server and Redis
  against the cluster (devcluster/argocd.py), stopped before the cluster, their files removed.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from devcluster.argocd import ArgoCD
from devcluster.binaries import REPO
from devcluster.clusters import ExistingCluster, LocalCluster
from devcluster.kube import Kube, temporary_namespace
from devcluster.processes import ManagedProcess

PROCESSES = pytest.StashKey[list[ManagedProcess]]()
CLUSTER_DIR = pytest.StashKey[Path]()
ARGOCD_LOGS = pytest.StashKey[Path]()
FAILED_LOG_LINES = 200

StartOperator = Callable[..., ManagedProcess]


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster | ExistingCluster]:
    if existing := os.environ.get("LOCKGATE_TEST_KUBECONFIG"):
        yield ExistingCluster(Path(existing))
        return
    directory = Path(tempfile.mkdtemp(prefix="lockgate-cluster-"))
    request.config.stash[CLUSTER_DIR] = directory
    local = LocalCluster(directory).start()
    try:
        yield local
    finally:
        local.stop()
        if not request.session.testsfailed:
            shutil.rmtree(directory, ignore_errors=True)
            del request.config.stash[CLUSTER_DIR]


@pytest.fixture(scope="session")
def argocd(
    cluster: LocalCluster | ExistingCluster,
    kube: Kube,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[ArgoCD]:
    directory = tmp_path_factory.mktemp("argocd")
    request.config.stash[ARGOCD_LOGS] = directory / "logs"
    started = ArgoCD(directory, kube, cluster.kubeconfig, cluster.kubectl).start()
    try:
        yield started
    finally:
        started.stop()
        shutil.rmtree(directory / "tmp", ignore_errors=True)  # the repo-server's clones; the logs stay with pytest's


@pytest.fixture(scope="session")
def kubeconfig(cluster: LocalCluster | ExistingCluster) -> Path:
    return cluster.kubeconfig


@pytest.fixture(scope="session")  # before `kube` and the like: on an existing cluster it skips first
def audit_log(cluster: LocalCluster | ExistingCluster) -> Path:
    if not isinstance(cluster, LocalCluster) or cluster.control_plane is None:
        pytest.skip(
            "needs the API server's audit log, which only the local cluster writes (devcluster's "
            "--audit-policy-file); LOCKGATE_TEST_KUBECONFIG names a cluster whose API server flags are not ours"
        )
    return cluster.control_plane.audit_log


@pytest.fixture(scope="session")
def kube(kubeconfig: Path) -> Iterator[Kube]:
    clients = Kube.from_kubeconfig(kubeconfig)
    yield clients
    clients.close()


def namespace_name(test_name: str) -> str:
    """A DNS-1123 label made from the test's name, unique per call."""
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:48].strip("-")
    return f"{slug or 't'}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    with temporary_namespace(kube, namespace_name(request.node.name)) as name:
        yield name


@pytest.fixture
def start_operator(kubeconfig: Path, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StartOperator]:
    started = request.node.stash.setdefault(PROCESSES, [])

    def start(command: Sequence[str], env: Mapping[str, str] | None = None, name: str = "operator") -> ManagedProcess:
        log_path = tmp_path / f"{name}-{len(started) + 1}.log"
        process_env = {**os.environ, "KUBECONFIG": str(kubeconfig), **(env or {})}
        process = ManagedProcess(name, command, log_path, env=process_env, cwd=REPO, die_with_parent=True)
        started.append(process.start())
        return process

    yield start
    for process in started:
        process.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for process in item.stash.get(PROCESSES, []):
        report.sections.append(
            (
                f"{process.name} log ({process.log_path}, last {FAILED_LOG_LINES} lines)",
                process.log_tail(FAILED_LOG_LINES),
            )
        )
    if ARGOCD_LOGS in item.config.stash and "argocd" in getattr(item, "fixturenames", ()):
        report.sections.append(
            ("Argo CD", f"controller, repo-server and Redis logs in {item.config.stash[ARGOCD_LOGS]}")
        )
    if CLUSTER_DIR in item.config.stash and "cluster" in getattr(item, "fixturenames", ()):
        directory = item.config.stash[CLUSTER_DIR]
        report.sections.append(
            ("lockgate test cluster", f"component logs in {directory}/logs, pod logs in {directory}/node/pod-logs")
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if CLUSTER_DIR in terminalreporter.config.stash:
        terminalreporter.write_line(
            f"lockgate test cluster kept for the failed tests: {terminalreporter.config.stash[CLUSTER_DIR]}"
        )

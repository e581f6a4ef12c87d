"""The clusters tests run against: a local one (control plane + a real node, started here) or
an existing one named by LOCKGATE_TEST_KUBECONFIG (kind, say), behind one interface."""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import time
from pathlib import Path
from typing import IO

from devcluster import host
from devcluster.binaries import cluster_bin_dir, registry_bin
from devcluster.controlplane import START_TIMEOUT, ControlPlane
from devcluster.images.recipes import PAUSE_IMAGE, Image
from devcluster.images.targets import build_images
from devcluster.kube import Kube
from devcluster.node import NODE_NAME, Node, NodeLayout, host_node_ip, node_is_ready
from devcluster.processes import ComponentError
from devcluster.registry import Registry, kept_storage

# The project's image as tests name it: built from the Dockerfile and pulled by the node from the
# cluster's registry; on an existing cluster it must be loadable there (e.g. `kind load docker-image lockgate:dev`).
TEST_IMAGE = os.environ.get("LOCKGATE_TEST_IMAGE", "lockgate:dev")
# An image that runs for ever and does nothing: the "app" of gated Deployments in the tests.
IDLE_IMAGE = PAUSE_IMAGE
# One local node per host: its bridge, cgroups and iptables chains are host-wide. The lock file
# also holds the host snapshot, so a node killed with SIGKILL is cleaned up by the next `up`.
HOST_LOCK = Path("/run/lockgate-devcluster.lock")


class LocalCluster:
    local = True
    real_image = TEST_IMAGE
    idle_image = IDLE_IMAGE

    def __init__(self, directory: Path, bin_dir: Path | None = None) -> None:
        self.directory = directory
        self.bin_dir = bin_dir
        self.node_name = NODE_NAME
        self.node_ip = ""
        self.control_plane: ControlPlane | None = None
        self.registry: Registry | None = None
        self.node: Node | None = None
        self.startup_seconds = 0.0
        self._lock: IO[str] | None = None
        self._host_before: host.HostState | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def kubectl(self) -> Path:
        assert self.bin_dir is not None, "not started"
        return self.bin_dir / "kubectl"

    def start(self, images: list[Image] | None = None) -> LocalCluster:
        bin_dir = self.bin_dir = self.bin_dir or cluster_bin_dir()
        registry_binary = registry_bin()
        self._take_host()
        try:
            # Once the host is ours: while this waited for another cluster, a checkout sharing the
            # cache may have built and pruned archives (warm, this checks and builds nothing).
            images = images if images is not None else build_images()
            started = time.monotonic()
            self.node_ip = host_node_ip()
            self.control_plane = ControlPlane(self.directory, self.bin_dir, self.node_name, self.node_ip).start()
            assert self.control_plane.pki is not None
            log = self.directory / "logs" / "registry.log"
            # One cluster per host at a time (the host lock), so one registry on the kept storage.
            self.registry = Registry(self.directory / "registry", registry_binary, log, storage=kept_storage())
            pushing = time.monotonic()
            self.registry.start().push_all(images)
            print(
                f"[devcluster] registry up, {len(images)} images in it: {time.monotonic() - pushing:.1f}s",
                file=sys.stderr,
            )
            layout = NodeLayout(self.directory / "node")
            shutil.rmtree(layout.root, ignore_errors=True)  # a reused directory starts a fresh node
            self.node = Node(layout, bin_dir, self.node_ip, self.control_plane.server, self.control_plane.pki)
            self.node.start(self.registry.host)
            self._wait_node_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Stop everything and put the host back as it was; safe to call twice."""
        if self.node:
            self.node.stop()
        if self.control_plane:
            self.control_plane.stop()
        if self.registry:
            self.registry.stop()
        if self._host_before is not None:
            undone = host.restore(self._host_before, self.directory / "node")
            log = self.directory / "logs" / "host-restore.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text("".join(f"{line}\n" for line in undone))
            print(f"[devcluster] host put back as it was: {len(undone)} changes undone ({log})", file=sys.stderr)
            self._host_before = None
        self._release_host()

    def _take_host(self) -> None:
        """Lock the host for this node, first restoring what a node that died without `down` left."""
        lock = HOST_LOCK.open("a+")
        if not _flock(lock, float(os.environ.get("LOCKGATE_CLUSTER_LOCK_WAIT", "0"))):
            lock.close()
            raise ComponentError(
                f"another local cluster runs on this host (lock {HOST_LOCK}); stop it first "
                "(`python -m devcluster down --dir DIR`, or end the pytest run that started it), "
                "or set LOCKGATE_CLUSTER_LOCK_WAIT=SECONDS to wait for it"
            )
        self._lock = lock
        lock.seek(0)
        if stale := lock.read().strip():
            state = host.HostState.from_json(stale)
            for line in host.restore(state, Path(state.node_dir)):
                print(f"[devcluster] left by an earlier node: {line}", file=sys.stderr)
        self._host_before = host.snapshot()
        self._host_before.node_dir = str(self.directory / "node")
        lock.seek(0)
        lock.truncate()
        lock.write(self._host_before.to_json())
        lock.flush()

    def _release_host(self) -> None:
        if self._lock:
            self._lock.seek(0)
            self._lock.truncate()
            self._lock.close()
            self._lock = None

    def _wait_node_ready(self) -> None:
        kube = Kube.from_kubeconfig(self.kubeconfig)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                nodes = kube.api.sanitize_for_serialization(kube.core.list_node().items)
                if any(n["metadata"]["name"] == self.node_name and node_is_ready(n) for n in nodes):
                    return
                time.sleep(0.5)
        finally:
            kube.close()
        raise ComponentError(
            f"node {self.node_name} not Ready after {START_TIMEOUT:.0f}s: see {self.directory}/logs/kubelet.log"
        )


def _flock(lock: IO[str], wait: float) -> bool:
    """Take the host lock, waiting up to `wait` seconds for another cluster to go."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(1)


class ExistingCluster:
    """LOCKGATE_TEST_KUBECONFIG: nothing is started or stopped; its own nodes run the pods."""

    local = False
    real_image = TEST_IMAGE
    idle_image = IDLE_IMAGE
    node_ip = ""  # pods reach the tests' database through LOCKGATE_TEST_DATABASE_URL_IN_CLUSTER

    def __init__(self, kubeconfig: Path) -> None:
        if not kubeconfig.is_file():
            raise ComponentError(f"LOCKGATE_TEST_KUBECONFIG={kubeconfig} is not a file")
        self.kubeconfig = kubeconfig

    @property
    def kubectl(self) -> Path:
        on_path = shutil.which("kubectl")
        return Path(on_path) if on_path else cluster_bin_dir() / "kubectl"

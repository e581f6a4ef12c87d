"""The clusters tests run against: a local one (control plane + node agent, started here)
or an existing one named by LOCKGATE_TEST_KUBECONFIG (kind, say), behind one interface."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.cluster.binaries import REPO, cluster_bin_dir
from tests.cluster.controlplane import START_TIMEOUT, ControlPlane
from tests.cluster.node import node_is_ready
from tests.cluster.podspec import DEFAULT_REAL_IMAGES, runs_for_real
from tests.cluster.processes import ComponentError, ManagedProcess, wait_until_ready
from tests.cluster.rest import Rest

# The project's image as tests name it: run for real by the node agent; on an existing
# cluster it must be loadable there (e.g. `kind load docker-image lockgate:dev`).
TEST_IMAGE = os.environ.get("LOCKGATE_TEST_IMAGE", "lockgate:dev")
# Any other image is simulated locally; this one also runs forever on a real node.
SIMULATED_IMAGE = "registry.k8s.io/pause:3.10"


def real_image_patterns() -> tuple[str, ...]:
    """LOCKGATE_TEST_REAL_IMAGES: space- or comma-separated globs; default: repositories named `lockgate`."""
    configured = os.environ.get("LOCKGATE_TEST_REAL_IMAGES", "").replace(",", " ").split()
    return tuple(configured) or DEFAULT_REAL_IMAGES


class LocalCluster:
    local = True
    real_image = TEST_IMAGE
    simulated_image = SIMULATED_IMAGE

    def __init__(
        self,
        directory: Path,
        nodes: int = 1,
        real_images: Sequence[str] = DEFAULT_REAL_IMAGES,
        bin_dir: Path | None = None,
    ) -> None:
        if not runs_for_real(TEST_IMAGE, real_images):
            raise ValueError(
                f"LOCKGATE_TEST_IMAGE={TEST_IMAGE} matches none of the real-image patterns {list(real_images)}"
            )
        self.directory = directory
        self.node_names = tuple(f"lockgate-node-{i}" for i in range(1, nodes + 1))
        self.real_images = tuple(real_images)
        self.bin_dir = bin_dir
        self.control_plane: ControlPlane | None = None
        self.agent: ManagedProcess | None = None
        self.startup_seconds = 0.0

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def kubectl(self) -> Path:
        assert self.bin_dir is not None, "not started"
        return self.bin_dir / "kubectl"

    def start(self) -> LocalCluster:
        self.bin_dir = self.bin_dir or cluster_bin_dir()
        started = time.monotonic()
        try:
            self.control_plane = ControlPlane(self.directory, self.bin_dir).start()
            self._start_agent(self.control_plane)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        if self.agent:
            self.agent.stop()
        if self.control_plane:
            self.control_plane.stop()

    def _start_agent(self, control_plane: ControlPlane) -> None:
        pki = control_plane.pki
        assert pki is not None
        shutil.rmtree(self.directory / "node", ignore_errors=True)  # pods of an earlier run in a reused directory
        argv = [
            sys.executable,
            "-m",
            "tests.cluster.nodeagent",
            f"--kubeconfig={control_plane.kubeconfig}",
            f"--state-dir={self.directory / 'node'}",
            f"--serving-cert={pki.node_server.cert}",
            f"--serving-key={pki.node_server.key}",
            f"--client-ca={pki.ca.cert}",
            *(f"--node={n}" for n in self.node_names),
            *(f"--real-image={p}" for p in self.real_images),
        ]
        self.agent = ManagedProcess(
            "node-agent", argv, self.directory / "logs" / "node-agent.log", cwd=REPO, die_with_parent=True
        ).start()
        rest = Rest(control_plane.kubeconfig)

        def nodes_ready() -> bool:
            nodes = rest.get("/api/v1/nodes")["items"]
            ready = {n["metadata"]["name"] for n in nodes if node_is_ready(n)}
            return ready >= set(self.node_names)

        wait_until_ready(self.agent, nodes_ready, START_TIMEOUT)


class ExistingCluster:
    """LOCKGATE_TEST_KUBECONFIG: nothing is started or stopped; its own nodes run the pods."""

    local = False
    real_image = TEST_IMAGE
    simulated_image = SIMULATED_IMAGE

    def __init__(self, kubeconfig: Path) -> None:
        if not kubeconfig.is_file():
            raise ComponentError(f"LOCKGATE_TEST_KUBECONFIG={kubeconfig} is not a file")
        self.kubeconfig = kubeconfig

    @property
    def kubectl(self) -> Path:
        on_path = shutil.which("kubectl")
        return Path(on_path) if on_path else cluster_bin_dir() / "kubectl"

"""`up` and `down` of the local cluster as a user runs them. One local node per host, so these
run before the session's cluster starts (see the `own_cluster` marker in conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from devcluster import host
from devcluster.binaries import REPO, cluster_bin_dir
from devcluster.clusters import HOST_LOCK
from devcluster.images.recipes import PAUSE_IMAGE
from devcluster.images.targets import build_images, default_cache_dir

pytestmark = [
    pytest.mark.own_cluster,
    pytest.mark.skipif(bool(os.environ.get("LOCKGATE_TEST_KUBECONFIG")), reason="starts a local cluster"),
]


# `up` may first wait this long for another local cluster on the host to go.
LOCK_WAIT = float(os.environ.get("LOCKGATE_CLUSTER_LOCK_WAIT", "0"))


def devcluster(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devcluster", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout + LOCK_WAIT,
    )


def kubectl_json(kubeconfig: Path, *args: str) -> dict:
    command = [str(cluster_bin_dir() / "kubectl"), "--kubeconfig", str(kubeconfig), *args, "-o", "json"]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def run_idle_pod(kubeconfig: Path) -> None:
    """A running pod, so the node has a containerd shim for `down` to stop."""
    kubectl = [str(cluster_bin_dir() / "kubectl"), "--kubeconfig", str(kubeconfig)]
    container = {"name": "idle", "image": PAUSE_IMAGE, "imagePullPolicy": "IfNotPresent"}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "idle"}, "spec": {"containers": [container]}}
    for _ in range(60):  # until the namespace's default ServiceAccount exists
        created = subprocess.run([*kubectl, "create", "-f", "-"], input=json.dumps(pod), capture_output=True, text=True)
        if created.returncode == 0:
            break
        time.sleep(1)
    assert created.returncode == 0, created.stderr
    subprocess.run(
        [*kubectl, "wait", "--for=condition=Ready", "pod/idle", "--timeout=120s"], check=True, capture_output=True
    )


def host_before(directory: Path) -> host.HostState:
    """The host as the running cluster's start found it, recorded under the host lock: a snapshot
    taken here before `up` could hold another cluster, on a shared host, that `up` waited for."""
    state = host.HostState.from_json(HOST_LOCK.read_text())
    assert state.node_dir == str(directory / "node")
    return state


def processes_naming(directory: Path) -> list[str]:
    """Command lines that name a path inside `directory`: the node's daemons and containerd's shims
    are all started with paths inside the cluster's directory (configs, the containerd socket)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue  # gone meanwhile
        if any(f"{directory}/" in arg for arg in argv):
            found.append(" ".join(argv).strip())
    return found


@pytest.mark.timeout(600 + 2 * LOCK_WAIT)
def test_up_runs_a_real_node_and_down_leaves_the_host_as_it_was(tmp_path: Path) -> None:
    build_images()  # before the snapshot: building is not what is under test
    # The second round reaches the same cache through a symlink, as a user whose ~/.cache/lockgate
    # is one does: what runs from it must still be recognised as the node's and stopped.
    cache_link = tmp_path / "cache-link"
    cache_link.symlink_to(default_cache_dir().parent.resolve(), target_is_directory=True)
    caches = {1: None, 2: {**os.environ, "LOCKGATE_CACHE_DIR": str(cache_link)}}
    for attempt, env in caches.items():  # the second `up` also proves `down` left nothing in its way
        directory = tmp_path / f"c{attempt}"
        up = devcluster("up", "--dir", str(directory), env=env)
        assert up.returncode == 0, up.stderr
        try:
            before = host_before(directory)
            (node,) = kubectl_json(directory / "kubeconfig", "get", "nodes")["items"]
            info = node["status"]["nodeInfo"]
            assert info["kubeletVersion"].startswith("v1.35.")
            assert info["containerRuntimeVersion"].startswith("containerd://2.")
            catalog = urllib.request.urlopen(f"http://{(directory / 'registry-host').read_text().strip()}/v2/_catalog")
            assert {"library/lockgate", "pause"} <= set(json.load(catalog)["repositories"])
            run_idle_pod(directory / "kubeconfig")
            # The node's containerd pulled pause (the sandbox's and the pod's image) from the cluster's
            # registry as registry.k8s.io's mirror: the node's status lists images only 30-40 s later.
            pulls = (directory / "logs" / "registry.log").read_text().splitlines()
            assert any(
                "GET /v2/pause/manifests/" in p and "ns=registry.k8s.io" in p and "containerd/" in p for p in pulls
            )
            assert any("containerd-shim" in line for line in processes_naming(directory)), "no shim to leave behind"
        finally:
            down = devcluster("down", "--dir", str(directory), env=env)
        assert down.returncode == 0, down.stderr
        assert processes_naming(directory) == [], f"left running after down #{attempt}"
        assert host.differences(before, host.snapshot()) == {}, f"after down #{attempt}"
        mounts = Path("/proc/self/mountinfo").read_text()
        assert str(directory) not in mounts


@pytest.mark.timeout(120 + LOCK_WAIT)
def test_up_reports_a_component_that_fails_to_start(tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    assets.mkdir()
    for binary in cluster_bin_dir().iterdir():
        if binary.name != "kube-apiserver" and not binary.name.startswith("."):
            (assets / binary.name).symlink_to(binary)
    (assets / "kube-apiserver").write_text("#!/bin/sh\necho 'E0101 fake apiserver: cannot start' >&2\nexit 1\n")
    (assets / "kube-apiserver").chmod(0o755)
    before = host.snapshot()
    result = devcluster("up", "--dir", str(tmp_path / "c"), env={**os.environ, "KUBEBUILDER_ASSETS": str(assets)})
    assert result.returncode != 0
    assert "kube-apiserver exited with 1" in result.stderr and "fake apiserver: cannot start" in result.stderr
    down = devcluster("down", "--dir", str(tmp_path / "c"))
    assert down.returncode == 0 and "no test cluster is running" in down.stdout
    assert host.differences(before, host.snapshot()) == {}

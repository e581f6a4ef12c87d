"""`up` and `down` of the local cluster as a user runs them. One local node per host, so these
run before the session's cluster starts (see the `own_cluster` marker in conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devcluster import host
from devcluster.binaries import REPO, cluster_bin_dir
from devcluster.images import LOCKGATE_IMAGE, build_images

pytestmark = [
    pytest.mark.own_cluster,
    pytest.mark.skipif(bool(os.environ.get("LOCKGATE_TEST_KUBECONFIG")), reason="starts a local cluster"),
]


def devcluster(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devcluster", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def kubectl_json(kubeconfig: Path, *args: str) -> dict:
    command = [str(cluster_bin_dir() / "kubectl"), "--kubeconfig", str(kubeconfig), *args, "-o", "json"]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


@pytest.mark.timeout(600)
def test_up_runs_a_real_node_and_down_leaves_the_host_as_it_was(tmp_path: Path) -> None:
    build_images()  # before the snapshot: building is not what is under test
    before = host.snapshot()
    for attempt in (1, 2):  # the second `up` proves `down` left nothing in its way
        directory = tmp_path / f"c{attempt}"
        up = devcluster("up", "--dir", str(directory))
        assert up.returncode == 0, up.stderr
        try:
            (node,) = kubectl_json(directory / "kubeconfig", "get", "nodes")["items"]
            info = node["status"]["nodeInfo"]
            assert info["kubeletVersion"].startswith("v1.35.")
            assert info["containerRuntimeVersion"].startswith("containerd://2.")
            images = {name for image in node["status"]["images"] for name in image.get("names", [])}
            assert any(name.startswith(LOCKGATE_IMAGE) for name in images), images
        finally:
            down = devcluster("down", "--dir", str(directory))
        assert down.returncode == 0, down.stderr
        assert host.differences(before, host.snapshot()) == {}, f"after down #{attempt}"
        mounts = Path("/proc/self/mountinfo").read_text()
        assert str(directory) not in mounts


@pytest.mark.timeout(120)
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

"""Where the Go-built binaries are: the control plane's in $KUBEBUILDER_ASSETS when it holds them all,
else the pinned build cache, filled by hack/build-cluster-bin.sh; the registry's by
hack/build-registry.sh (a warm cache builds nothing)."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "hack" / "build-cluster-bin.sh"
REGISTRY_BUILD_SCRIPT = REPO / "hack" / "build-registry.sh"


def _built(script: Path) -> Path:
    # The script owns the cache rules; its progress goes to our stderr, the path is its last line.
    result = subprocess.run([str(script)], stdout=subprocess.PIPE, text=True, check=True)
    return Path(result.stdout.strip().splitlines()[-1])


def cluster_bin_dir() -> Path:
    return _built(BUILD_SCRIPT)


def registry_bin() -> Path:
    return _built(REGISTRY_BUILD_SCRIPT)

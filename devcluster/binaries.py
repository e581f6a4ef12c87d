"""Where the control-plane binaries are: $KUBEBUILDER_ASSETS when it holds them all,
else the pinned build cache, filled by hack/build-cluster-bin.sh (a warm cache builds nothing)."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "hack" / "build-cluster-bin.sh"


def cluster_bin_dir() -> Path:
    # The script owns the KUBEBUILDER_ASSETS and cache rules; its progress goes to our stderr.
    result = subprocess.run([str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=True)
    return Path(result.stdout.strip().splitlines()[-1])

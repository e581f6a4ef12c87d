"""Benchmark: what the dev cluster's registry adds to each cluster start (devcluster/registry.py).

Each run starts a registry as a cluster start does (a new port each time) and pushes the built
images (`python -m devcluster.images`) to it, two at a time, with skopeo:

- into empty storage: every start before the storage was kept, and the first start after the
  images changed (skopeo compresses every layer);
- into the storage the previous run left, the images unchanged: what later starts cost now (the
  start's garbage collection, then one manifest read per image: its tag already holds it).

The registries run on loopback in a temporary directory, not the cluster's kept storage, so no
cluster is needed and a running one is not disturbed. Run with `make bench-registry` or
`.venv/bin/python benchmarks/registry_push.py [--runs N]`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # devcluster, from a checkout

from devcluster.binaries import registry_bin  # noqa: E402
from devcluster.images.recipes import Image  # noqa: E402
from devcluster.images.targets import build_images  # noqa: E402
from devcluster.registry import Registry  # noqa: E402


def start_and_push(root: Path, storage: Path, images: list[Image]) -> float:
    """Seconds from starting a registry on `storage` until every image is in it."""
    started = time.monotonic()
    registry = Registry(root, registry_bin(), root / "registry.log", storage=storage).start()
    try:
        registry.push_all(images)
    finally:
        registry.stop()
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    images = build_images()
    megabytes = sum(image.archive.stat().st_size for image in images) / 1e6
    print(f"{len(images)} images, {megabytes:.0f} MB of archives: {', '.join(image.ref for image in images)}")
    cold, warm = [], []
    with tempfile.TemporaryDirectory(prefix="lockgate-bench-registry-") as tmp:
        for run in range(runs):
            storage = Path(tmp) / f"storage-{run}"
            cold.append(start_and_push(Path(tmp) / f"cold-{run}", storage, images))
            warm.append(start_and_push(Path(tmp) / f"warm-{run}", storage, images))
            shutil.rmtree(storage)
            print(f"run {run + 1}: empty storage {cold[-1]:.2f} s, kept storage {warm[-1]:.2f} s", flush=True)
    print(f"start + push, median of {runs}: empty storage {statistics.median(cold):.2f} s, ", end="")
    print(f"kept storage and unchanged images {statistics.median(warm):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The builds: how each image is made in buildah's store, once its inputs are known."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from devcluster.binaries import REPO
from devcluster.images.buildah import Buildah, require, run
from devcluster.images.recipes import (
    BASE_CONFIG,
    BASE_IMAGE,
    CACHE_REPO,
    LOCKGATE_CONFIG,
    LOCKGATE_IMAGE,
    PAUSE_CONFIG,
    PAUSE_IMAGE,
    mmdebstrap_command,
)

PULL_TIMEOUT = 120  # seconds: a reachable registry serves the base within it; an unreachable one fails at once
# pip in the Dockerfile's builder stage trusts what the host trusts (a TLS-intercepting proxy's CA, say),
# mounted for the build's RUN steps only: the image keeps Debian's bundle.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILDER_TAG = f"{CACHE_REPO}/lockgate-builder:latest"  # keeps the builder stage's layers through `rmi --prune`


def build_base(buildah: Buildah, sources: list[str]) -> None:
    if _pull(buildah, BASE_IMAGE):
        return
    require("mmdebstrap", "apt-get install mmdebstrap")
    with tempfile.TemporaryDirectory(dir=buildah.cache, prefix=".base-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        run(mmdebstrap_command(sources, rootfs), "making the base with mmdebstrap", buildah.progress)
        with buildah.container("scratch") as container:
            buildah("add", container, str(rootfs), "/", what="importing the base's root filesystem")
            buildah("config", *BASE_CONFIG, container)
            buildah("commit", container, BASE_IMAGE, what="committing the base")


def _pull(buildah: Buildah, ref: str) -> bool:
    """The real image, where a registry answers (once, briefly); else False."""
    buildah.progress(f"trying to pull {ref}")
    command = [*buildah.command, "pull", "--policy", "always", "--retry", "0", ref]  # `always`: never our own build
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PULL_TIMEOUT)
    except subprocess.TimeoutExpired:
        buildah.progress(f"no pull within {PULL_TIMEOUT}s: making the base with mmdebstrap")
        return False
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["?"])[-1]
        buildah.progress(f"cannot pull ({reason}): making the base with mmdebstrap")
    return result.returncode == 0


def build_lockgate(buildah: Buildah) -> None:
    bud = ["bud", "--network", "host", "--pull=never", "--layers", "-f", str(REPO / "Dockerfile")]
    if HOST_CA_BUNDLE.is_file():
        bud += ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
    buildah(*bud, "--target", "builder", "-t", BUILDER_TAG, str(REPO), what="building the Dockerfile's builder stage")
    buildah(*bud, "-t", LOCKGATE_IMAGE, str(REPO), what="building the Dockerfile's final stage")
    buildah.check_config(LOCKGATE_IMAGE, LOCKGATE_CONFIG)
    with buildah.container(LOCKGATE_IMAGE) as container:
        version = buildah("run", "--network", "none", container, "--", "lockgate", "--version").strip()
    buildah.progress(f"{LOCKGATE_IMAGE} runs as {LOCKGATE_CONFIG['User']}: {version}")


def build_example(
    buildah: Buildah, ref: str, context: Path, check: Sequence[str], contexts: Mapping[str, Path] | None = None
) -> None:
    """An example's Dockerfile on lockgate's image (its RUN steps may download: pip from PyPI, apt from
    Debian), then `check` run in the image without a network. `contexts` are named extra build contexts."""
    bud = ["bud", "--network", "host", "--pull=never", "--layers", "-f", str(context / "Dockerfile")]
    if HOST_CA_BUNDLE.is_file():
        bud += ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
    for name, path in (contexts or {}).items():
        bud += ["--build-context", f"{name}={path}"]
    bud += ["--build-arg", f"LOCKGATE_IMAGE={LOCKGATE_IMAGE}", "-t", ref, str(context)]
    buildah(*bud, what=f"building {context.relative_to(REPO)}")
    with buildah.container(ref) as container:
        buildah.progress(buildah("run", "--network", "none", container, "--", *check).strip()[-200:])


def build_pause(buildah: Buildah, source: Path, flags: tuple[str, ...]) -> None:
    require("gcc", "apt-get install gcc libc6-dev")
    with tempfile.TemporaryDirectory(dir=buildah.cache, prefix=".pause-") as tmp:
        binary = Path(tmp) / "pause"
        run(["gcc", *flags, "-o", str(binary), str(source)], "compiling pause.c", buildah.progress)
        run(["strip", str(binary)], "stripping pause", buildah.progress)  # as Kubernetes' Makefile does
        buildah.progress(run([str(binary), "-v"], "running pause -v", buildah.progress).strip())
        with buildah.container("scratch") as container:
            buildah("copy", container, str(binary), "/pause")
            buildah("config", *PAUSE_CONFIG, container)
            buildah("commit", container, PAUSE_IMAGE, what="committing pause")

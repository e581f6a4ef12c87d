"""Targets: what to build, in dependency order, and the archives a build leaves in the cache."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devcluster.binaries import REPO
from devcluster.images.buildah import Buildah, session
from devcluster.images.builds import build_base, build_example, build_lockgate, build_pause
from devcluster.images.inputs import (
    FETCH_FLYWAY,
    KUBEBIN,
    context_files,
    example_files,
    files_digest,
    flyway_home,
    host_apt_sources,
    pause_source,
)
from devcluster.images.recipes import (
    BASE_CONFIG,
    BASE_DPKG_OPTIONS,
    BASE_IMAGE,
    BASE_PACKAGES,
    CACHE_REPO,
    EXAMPLES,
    KEY_CHARS,
    LOCKGATE_IMAGE,
    PAUSE_CONFIG,
    PAUSE_IMAGE,
    Example,
    Image,
    archive_name,
    archive_stem,
    digest,
    dockerignore,
    module_version,
    pause_flags,
)

KEEP_ARCHIVES = 3  # per ref: see _prune


def default_cache_dir() -> Path:
    """${LOCKGATE_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/lockgate}/images, as hack/build-cluster-bin.sh."""
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("LOCKGATE_CACHE_DIR") or Path(xdg) / "lockgate") / "images"


def build_images(cache: Path | None = None) -> list[Image]:
    """pause, lockgate and shop archives in `cache` (default: default_cache_dir()), building what is missing."""
    cache = cache or default_cache_dir()
    targets = _targets()
    images = [Image(t.ref, cache / archive_name(t.ref, t.key)) for t in targets]
    if all(image.archive.exists() for image in images):
        return images
    with session(cache) as buildah:
        for target, image in zip(targets, images, strict=True):
            if not image.archive.exists():  # checked again: another process may have built it meanwhile
                _store(buildah, target)
                _export(buildah, image)
        buildah("rmi", "--prune")  # superseded builds
    return images


@dataclass(frozen=True)
class Target:
    ref: str
    key: str  # sha256 of everything the image is built from
    build: Callable[[Buildah], None]  # leaves `ref` in buildah's store
    parent: Target | None = None  # what the build starts FROM
    exported: bool = True  # whether an archive of it exists to load from

    @property
    def cache_tag(self) -> str:
        name = self.ref.rsplit("/", 1)[-1].split(":")[0]
        return f"{CACHE_REPO}/{name}:{self.key[:KEY_CHARS]}"


def _targets() -> list[Target]:
    base = _base_target()
    rules = dockerignore((REPO / ".dockerignore").read_text())
    context = ["Dockerfile", ".dockerignore", *context_files(REPO, rules)]
    lockgate = Target(LOCKGATE_IMAGE, digest(base.key, files_digest(REPO, context)), build_lockgate, parent=base)
    return [_pause_target(), lockgate, *(_example_target(example, lockgate) for example in EXAMPLES)]


def _example_target(example: Example, lockgate: Target) -> Target:
    context = REPO / example.directory
    inputs = [files_digest(context, example_files(context))]
    if example.flyway:
        inputs.append(FETCH_FLYWAY.read_text())  # it pins the jars' versions and checksums
    build = functools.partial(_build_example, example=example)
    return Target(example.ref, digest(lockgate.key, *inputs), build, parent=lockgate)


def _build_example(buildah: Buildah, example: Example) -> None:
    contexts = {"flyway": flyway_home(buildah.progress)} if example.flyway else {}
    build_example(buildah, example.ref, REPO / example.directory, example.check, contexts)


def _base_target() -> Target:
    sources = host_apt_sources()
    recipe = json.dumps(
        {"packages": BASE_PACKAGES, "dpkg": BASE_DPKG_OPTIONS, "config": BASE_CONFIG, "sources": sources}
    )
    build = functools.partial(build_base, sources=sources)
    return Target(BASE_IMAGE, digest(BASE_IMAGE, recipe), build, exported=False)


def _pause_target() -> Target:
    kube_version = module_version((KUBEBIN / "go.mod").read_text(), "k8s.io/kubernetes")
    source = pause_source(kube_version)
    flags = pause_flags((source.parents[1] / "Makefile").read_text(), kube_version)
    key = digest(PAUSE_IMAGE, source.read_bytes(), *flags, *PAUSE_CONFIG)
    return Target(PAUSE_IMAGE, key, functools.partial(build_pause, source=source, flags=flags))


def _store(buildah: Buildah, target: Target) -> None:
    """Make `target.ref` name the build of `target.key` in buildah's store: tagged, loaded or built."""
    archive = buildah.cache / archive_name(target.ref, target.key)
    if buildah.has(target.cache_tag):
        buildah("tag", target.cache_tag, target.ref)
        return
    if target.exported and archive.exists():
        buildah("pull", f"docker-archive:{archive}", what=f"loading {archive.name}")
    else:
        if target.parent:
            _store(buildah, target.parent)
        buildah.progress(f"building {target.ref}")
        target.build(buildah)
    buildah.remember(target.ref, target.cache_tag)


def _export(buildah: Buildah, image: Image) -> None:
    """Write the archive under a temporary name and rename it at the end: a failed build never looks warm."""
    partial = image.archive.with_name(f".{image.archive.name}.{os.getpid()}.partial")
    try:
        buildah("push", image.ref, f"docker-archive:{partial}:{image.ref}", what=f"exporting {image.ref}")
        partial.rename(image.archive)
    finally:
        partial.unlink(missing_ok=True)
    _prune(image)
    size = image.archive.stat().st_size / 2**20
    buildah.progress(f"{image.ref}: {image.archive} ({size:.0f} MiB)")


def _prune(image: Image) -> None:
    """Keep the newest KEEP_ARCHIVES archives of a ref: clones or branches of the checkout that differ
    share this cache, and one may be importing the archive another's build would otherwise delete."""
    archives = sorted(
        image.archive.parent.glob(f"{archive_stem(image.ref)}-{'?' * KEY_CHARS}.tar"),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for stale in archives[KEEP_ARCHIVES:]:
        stale.unlink(missing_ok=True)

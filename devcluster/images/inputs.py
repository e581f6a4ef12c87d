"""The inputs on disk: the build contexts' files, the host's apt sources, Kubernetes' pause.c."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from devcluster.binaries import REPO
from devcluster.images.buildah import Progress, run
from devcluster.images.recipes import (
    BASE_SUITE,
    DEFAULT_SOURCES,
    IgnoreRule,
    ImageBuildError,
    apt_sources,
    digest,
    dockerignore,
    is_included,
    may_hold_included,
)

FETCH_FLYWAY = REPO / "hack" / "fetch-flyway.sh"
KUBEBIN = REPO / "hack" / "kubebin"  # its go.mod pins the Kubernetes module that holds pause.c


def context_files(root: Path, rules: list[IgnoreRule]) -> list[str]:
    """The files under `root` that a build context with these .dockerignore rules holds, sorted."""
    found = []
    for directory, subdirectories, files in os.walk(root):
        rel = Path(directory).relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"
        subdirectories[:] = [
            d for d in subdirectories if is_included(prefix + d, rules) or may_hold_included(prefix + d, rules)
        ]
        found += [prefix + f for f in files if is_included(prefix + f, rules)]
    return sorted(found)


def files_digest(root: Path, paths: Iterable[str]) -> str:
    return digest(*(part for path in paths for part in (path, (root / path).read_bytes())))


def host_apt_sources() -> list[str]:
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    texts = {str(f): f.read_text() for f in files if f.suffix in (".list", ".sources") and f.is_file()}
    return apt_sources(texts, BASE_SUITE) or list(DEFAULT_SOURCES)


def pause_source(kube_version: str) -> Path:
    """Kubernetes' pause.c in the Go module cache; downloaded there (as hack/kubebin pins it) if missing."""
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if not go:
        raise ImageBuildError(
            "go not found: install Go >= 1.25 (https://go.dev/dl); pause.c comes from its module cache"
        )
    modcache = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    source = Path(modcache) / f"k8s.io/kubernetes@{kube_version}" / "build" / "pause" / "linux" / "pause.c"
    if not source.exists():
        run([go, "mod", "download", "k8s.io/kubernetes"], "downloading the Kubernetes module", Progress(), cwd=KUBEBIN)
    return source


def example_files(root: Path) -> list[str]:
    """The files of an example's build context (its .dockerignore applied, where it has one)."""
    ignore = root / ".dockerignore"
    return context_files(root, dockerignore(ignore.read_text()) if ignore.exists() else [])


def flyway_home(progress: Progress) -> Path:
    """The directory of Flyway's jars and launcher, fetched (checksummed) into the cache if missing."""
    return Path(run([str(FETCH_FLYWAY)], "fetching Flyway's jars (hack/fetch-flyway.sh)", progress).strip()).parent

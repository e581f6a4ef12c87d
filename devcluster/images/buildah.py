"""The I/O shell: processes with a heartbeat, buildah on the cache's own store, the cache lock."""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from devcluster.images.recipes import ImageBuildError, config_problems

HEARTBEAT = 30  # seconds between "still ..." lines during a long step


class Progress:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[images +{time.monotonic() - self.start:.0f}s] {message}", file=sys.stderr, flush=True)


def require(tool: str, install: str) -> None:
    if not shutil.which(tool):
        raise ImageBuildError(f"{tool} not found: {install}")


def run(command: Sequence[str], what: str, progress: Progress, cwd: Path | None = None) -> str:
    """stdout of `command`; a heartbeat while it runs; on failure an error with the end of its output."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=cwd)
        try:
            _wait(process, what, progress)
        except BaseException:  # interrupted: the child must not outlive us
            process.kill()
            process.wait()
            raise
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if process.returncode != 0:
        tail = "\n".join((stdout + stderr).strip().splitlines()[-30:])
        raise ImageBuildError(f"{what} failed (exit {process.returncode}): {shlex.join(command)}\n{tail}")
    return stdout


def _wait(process: subprocess.Popen[bytes], what: str, progress: Progress) -> None:
    while True:
        try:
            process.wait(timeout=HEARTBEAT)
            return
        except subprocess.TimeoutExpired:
            progress(f"still {what}...")


def storage_driver() -> list[str]:
    # overlay shares layers between images; vfs copies each in full (slow, several GB), so only where
    # the kernel has no overlayfs. skip_mount_home: no private bind mount of the store that outlives buildah.
    if "overlay" in Path("/proc/filesystems").read_text().split():
        return ["--storage-driver", "overlay", "--storage-opt", "overlay.skip_mount_home=true"]
    return ["--storage-driver", "vfs"]


class Buildah:
    """buildah on a store of its own under the cache: the host's /var/lib/containers stays untouched."""

    def __init__(self, cache: Path, progress: Progress) -> None:
        self.cache = cache
        self.progress = progress
        store = cache / "containers"
        self.command = ["buildah", "--root", str(store / "storage"), "--runroot", str(store / "run"), *storage_driver()]

    def __call__(self, *args: str, what: str | None = None) -> str:
        return run([*self.command, *args], what or f"buildah {args[0]}", self.progress)

    def has(self, ref: str) -> bool:
        command = [*self.command, "inspect", "--type", "image", ref]
        return subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0

    def remember(self, ref: str, cache_tag: str) -> None:
        """Tag `ref` with its key, untagging that image's older keys so `rmi --prune` can drop them."""
        self("tag", ref, cache_tag)
        repository = cache_tag.rsplit(":", 1)[0]
        for name in self("images", "--noheading", "--format", "{{.Name}}:{{.Tag}}").split():
            if name.rsplit(":", 1)[0] == repository and name != cache_tag:
                self("rmi", name)

    def check_config(self, ref: str, expected: dict[str, object]) -> None:
        config = json.loads(self("inspect", "--type", "image", ref))["OCIv1"]["config"]
        problems = config_problems(config, expected)
        if problems:
            raise ImageBuildError(f"{ref}: {'; '.join(problems)} (see the Dockerfile)")

    @contextmanager
    def container(self, image: str) -> Iterator[str]:
        """A working container, removed afterwards (which unmounts it)."""
        name = self("from", "--pull=never", image).strip().splitlines()[-1]
        try:
            yield name
        finally:
            self("rm", name)


@contextmanager
def session(cache: Path) -> Iterator[Buildah]:
    """buildah on the cache's store, one process at a time; no working container or temporary survives it."""
    if os.geteuid() != 0:
        raise ImageBuildError("building images needs root (buildah runs build steps with runc; mmdebstrap --mode=root)")
    require("buildah", "apt-get install buildah")
    cache.mkdir(parents=True, exist_ok=True)
    progress = Progress()
    with open(cache / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another image build (lock {cache / '.lock'})")
            fcntl.flock(lock, fcntl.LOCK_EX)
        buildah = Buildah(cache, progress)
        _remove_leftovers(buildah)
        try:
            yield buildah
        finally:
            _remove_leftovers(buildah)


def _remove_leftovers(buildah: Buildah) -> None:
    """What a failed or killed build leaves: working containers (mounted) and temporaries, all named `.*`.
    Only the lock's holder makes either, so whatever exists when it starts or ends is left over."""
    subprocess.run([*buildah.command, "rm", "--all"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for path in buildah.cache.glob(".*"):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.name != ".lock":
            path.unlink()

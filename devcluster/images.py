"""The container images the dev cluster's real node runs, built here: no registry is reachable.

`build_images()` returns docker-archive tarballs, each importable with
`ctr -n k8s.io images import <archive>` under its ref:

- pause: containerd's sandbox image, Kubernetes' own pause.c (from the Go module cache) compiled statically;
- lockgate: the repository's Dockerfile, built for real with buildah;
- the shop sample app (examples/shop/app), on top of lockgate.

The Dockerfile's base, python:3.11-slim-bookworm, is pulled where a registry answers; otherwise an
equivalent is made with mmdebstrap from the host's Debian mirrors. Every archive is named for a sha256
of what it is built from, so a warm cache builds nothing and a change rebuilds only what depends on it.
The base's key is its recipe, not its packages' versions: remove the cache to pick up Debian's updates.
buildah keeps its store (images, layers, containers) under the cache directory; only what buildah 1.28
has no flag to move lands outside: its blob-info cache (/var/lib/containers/cache) and empty network
directories (/etc/containers/networks, /etc/cni/net.d, /run/containers/networks). Building needs root,
buildah, mmdebstrap (unless the base can be pulled), gcc and go; a warm cache needs only go.

    python -m devcluster.images [--cache DIR]   # one "ref archive" line per image on stdout
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import hashlib
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devcluster.binaries import REPO

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
LOCKGATE_IMAGE = "docker.io/library/lockgate:dev"
SHOP_IMAGE = "docker.io/library/lockgate-shop:dev"
BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"

SHOP_APP = REPO / "examples" / "shop" / "app"
KUBEBIN = REPO / "hack" / "kubebin"  # its go.mod pins the Kubernetes module that holds pause.c

# The base: what python:3.11-slim-bookworm holds, from Debian's packages (Python 3.11 is bookworm's).
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "python-is-python3")
# As debian:bookworm-slim does, also for later apt-get installs: no manuals, docs (licences stay) or translations.
BASE_DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
)
BASE_CONFIG = (
    *("--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
    *("--env", "LANG=C.UTF-8"),
    *("--cmd", '["python3"]'),
)
DEFAULT_SOURCES = (  # where the host's apt sources name no bookworm mirror
    f"deb http://deb.debian.org/debian {BASE_SUITE} main",
    f"deb http://deb.debian.org/debian {BASE_SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {BASE_SUITE}-security main",
)
PAUSE_CONFIG = ("--entrypoint", '["/pause"]', "--user", "65535:65535")  # as Kubernetes' pause Dockerfile
LOCKGATE_CONFIG = {"User": "10001:10001", "Entrypoint": ["lockgate"]}  # what the chart and the operator expect

PULL_TIMEOUT = 120  # seconds: a reachable registry serves the base within it; an unreachable one fails at once
HEARTBEAT = 30  # seconds between "still ..." lines during a long step
# pip in the Dockerfile's builder stage trusts what the host trusts (a TLS-intercepting proxy's CA, say),
# mounted for the build's RUN steps only: the image keeps Debian's bundle.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
KEY_CHARS = 16  # of a key's sha256, in archive names and tags
KEEP_ARCHIVES = 3  # per ref: see _prune
CACHE_REPO = "localhost/lockgate-cache"  # tags naming each stored image's key
BUILDER_TAG = f"{CACHE_REPO}/lockgate-builder:latest"  # keeps the builder stage's layers through `rmi --prune`


@dataclass(frozen=True)
class Image:
    ref: str
    archive: Path  # docker-archive tarball; `ctr -n k8s.io images import` names the image `ref`


class ImageBuildError(RuntimeError):
    pass


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
    with _session(cache) as buildah:
        for target, image in zip(targets, images, strict=True):
            if not image.archive.exists():  # checked again: another process may have built it meanwhile
                _store(buildah, target)
                _export(buildah, image)
        buildah("rmi", "--prune")  # superseded builds
    return images


# ---- what each image is built from (pure) ----


def digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(b"%d:" % len(data) + data)  # length-prefixed: no two part lists hash alike
    return h.hexdigest()


def archive_stem(ref: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", ref)


def archive_name(ref: str, key: str) -> str:
    return f"{archive_stem(ref)}-{key[:KEY_CHARS]}.tar"


def apt_sources(files: dict[str, str], suite: str) -> list[str]:
    """One-line `deb` entries for `suite` and its -updates/-security suites, from sources.list(.d) texts by file name."""
    entries: list[str] = []
    for name, text in files.items():
        parse = _deb822_entries if name.endswith(".sources") else _one_line_entries
        for uri, entry_suite, components in parse(text):
            line = f"deb {uri} {entry_suite} {components}".strip()
            if entry_suite.split("-")[0] == suite and line not in entries:
                entries.append(line)
    return entries


def _deb822_entries(text: str) -> Iterator[tuple[str, str, str]]:
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^([\w-]+):[ \t]*(.*)$", stanza, re.MULTILINE))  # comment lines start with '#'
        if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
            for uri in fields.get("URIs", "").split():
                for suite in fields.get("Suites", "").split():
                    yield uri, suite, fields.get("Components", "")


def _one_line_entries(text: str) -> Iterator[tuple[str, str, str]]:
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()  # drop [options]
        if len(words) >= 3 and words[0] == "deb":
            yield words[1], words[2], " ".join(words[3:])


@dataclass(frozen=True)
class IgnoreRule:
    excludes: bool  # False for an exception (`!pattern`)
    pattern: str
    regex: re.Pattern[str]


def dockerignore(text: str) -> list[IgnoreRule]:
    """The rules of a .dockerignore, in order: the last one matching a path or one of its parents decides."""
    rules = []
    for line in text.splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        cleaned = posixpath.normpath(pattern.lstrip("!").strip()).lstrip("/")
        rules.append(IgnoreRule(not pattern.startswith("!"), cleaned, re.compile(_glob_regex(cleaned))))
    return rules


def _glob_regex(pattern: str) -> str:
    """Docker's globs: `**` spans directories, `*` and `?` stay within one (character classes unsupported)."""
    tokens = re.split(r"(\*\*/|\*\*|\*|\?)", pattern)
    wild = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return "".join(wild.get(token, re.escape(token)) for token in tokens)


def is_included(path: str, rules: list[IgnoreRule]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    included = True
    for rule in rules:
        if any(rule.regex.fullmatch(prefix) for prefix in prefixes):
            included = not rule.excludes
    return included


def _may_hold_included(directory: str, rules: list[IgnoreRule]) -> bool:
    """Whether an excluded directory may still hold a file that an exception lets in (so walk it)."""
    for rule in rules:
        fixed = re.split(r"[*?\[]", rule.pattern)[0]  # the pattern's start before any wildcard
        if not rule.excludes and (fixed.startswith(directory + "/") or (directory + "/").startswith(fixed)):
            return True
    return False


def module_version(go_mod: str, module: str) -> str:
    found = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod, re.MULTILINE)
    if not found:
        raise ImageBuildError(f"{module} is not in hack/kubebin/go.mod: it pins the Kubernetes source of pause.c")
    return found.group(1)


def pause_flags(makefile: str, kube_version: str) -> tuple[str, ...]:
    """CFLAGS of Kubernetes' build/pause/Makefile; its REV (`git describe`) is the Kubernetes tag."""
    tag = re.search(r"^TAG \?= (\S+)", makefile, re.MULTILINE)
    if not tag:
        raise ImageBuildError("no `TAG ?=` in Kubernetes' build/pause/Makefile: update devcluster.images.pause_flags")
    return ("-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{tag.group(1)}-{kube_version}")


def config_problems(config: dict[str, object], expected: dict[str, object]) -> list[str]:
    return [
        f"{key} is {config.get(key)!r}, expected {value!r}"
        for key, value in expected.items()
        if config.get(key) != value
    ]


# ---- the inputs on disk ----


def context_files(root: Path, rules: list[IgnoreRule]) -> list[str]:
    """The files under `root` that a build context with these .dockerignore rules holds, sorted."""
    found = []
    for directory, subdirectories, files in os.walk(root):
        rel = Path(directory).relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"
        subdirectories[:] = [
            d for d in subdirectories if is_included(prefix + d, rules) or _may_hold_included(prefix + d, rules)
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


# ---- targets: what to build, in dependency order ----


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
    lockgate = Target(LOCKGATE_IMAGE, digest(base.key, files_digest(REPO, context)), _build_lockgate, parent=base)
    shop_files = files_digest(SHOP_APP, context_files(SHOP_APP, []))
    shop = Target(SHOP_IMAGE, digest(lockgate.key, shop_files), _build_shop, parent=lockgate)
    return [_pause_target(), lockgate, shop]


def _base_target() -> Target:
    sources = host_apt_sources()
    recipe = json.dumps(
        {"packages": BASE_PACKAGES, "dpkg": BASE_DPKG_OPTIONS, "config": BASE_CONFIG, "sources": sources}
    )
    build = functools.partial(_build_base, sources=sources)
    return Target(BASE_IMAGE, digest(BASE_IMAGE, recipe), build, exported=False)


def _pause_target() -> Target:
    kube_version = module_version((KUBEBIN / "go.mod").read_text(), "k8s.io/kubernetes")
    source = pause_source(kube_version)
    flags = pause_flags((source.parents[1] / "Makefile").read_text(), kube_version)
    key = digest(PAUSE_IMAGE, source.read_bytes(), *flags, *PAUSE_CONFIG)
    return Target(PAUSE_IMAGE, key, functools.partial(_build_pause, source=source, flags=flags))


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


# ---- the builds ----


def _build_base(buildah: Buildah, sources: list[str]) -> None:
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


def mmdebstrap_command(sources: Sequence[str], output: Path) -> list[str]:
    return [
        "mmdebstrap",
        "--mode=root",
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        *(f"--dpkgopt={option}" for option in BASE_DPKG_OPTIONS),
        "--skip=output/dev",  # no device nodes in the image: the runtime provides /dev
        BASE_SUITE,
        str(output),
        *sources,
    ]


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


def _build_lockgate(buildah: Buildah) -> None:
    bud = ["bud", "--network", "host", "--pull=never", "--layers", "-f", str(REPO / "Dockerfile")]
    if HOST_CA_BUNDLE.is_file():
        bud += ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
    buildah(*bud, "--target", "builder", "-t", BUILDER_TAG, str(REPO), what="building the Dockerfile's builder stage")
    buildah(*bud, "-t", LOCKGATE_IMAGE, str(REPO), what="building the Dockerfile's final stage")
    buildah.check_config(LOCKGATE_IMAGE, LOCKGATE_CONFIG)
    with buildah.container(LOCKGATE_IMAGE) as container:
        version = buildah("run", "--network", "none", container, "--", "lockgate", "--version").strip()
    buildah.progress(f"{LOCKGATE_IMAGE} runs as {LOCKGATE_CONFIG['User']}: {version}")


def _build_shop(buildah: Buildah) -> None:
    buildah(
        *("bud", "--pull=never", "--layers", "-f", str(SHOP_APP / "Dockerfile")),
        *("--build-arg", f"LOCKGATE_IMAGE={LOCKGATE_IMAGE}", "-t", SHOP_IMAGE, str(SHOP_APP)),
        what="building the shop app",
    )
    with buildah.container(SHOP_IMAGE) as container:  # the app needs the lockgate venv's psycopg
        buildah("run", "--network", "none", container, "--", "python", "-c", "import psycopg")


def _build_pause(buildah: Buildah, source: Path, flags: tuple[str, ...]) -> None:
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


# ---- the I/O shell: processes, buildah, the cache lock ----


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
def _session(cache: Path) -> Iterator[Buildah]:
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster.images", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None, help=f"default: {default_cache_dir()}")
    args = parser.parse_args(argv)
    try:
        images = build_images(args.cache)
    except ImageBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for image in images:
        print(image.ref, image.archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What each image is built from, as pure functions: refs, recipes, keys, .dockerignore rules, apt sources."""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
LOCKGATE_IMAGE = "docker.io/library/lockgate:dev"
SHOP_IMAGE = "docker.io/library/lockgate-shop:dev"
DJANGO_IMAGE = "docker.io/library/lockgate-django:dev"
ALEMBIC_IMAGE = "docker.io/library/lockgate-alembic:dev"
FLYWAY_IMAGE = "docker.io/library/lockgate-flyway:dev"
BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"

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
# What the chart and the operator expect.
LOCKGATE_CONFIG: dict[str, object] = {"User": "10001:10001", "Entrypoint": ["lockgate"]}

KEY_CHARS = 16  # of a key's sha256, in archive names and tags
CACHE_REPO = "localhost/lockgate-cache"  # tags naming each stored image's key


@dataclass(frozen=True)
class Example:
    """An example's image: its directory's Dockerfile, built on lockgate's image."""

    ref: str
    directory: str  # in the repository: the build context
    check: tuple[str, ...]  # what the built image must run, without a network
    flyway: bool = False  # its Dockerfile copies hack/fetch-flyway.sh's jars from the build context `flyway`


EXAMPLES = (
    Example(SHOP_IMAGE, "examples/shop/app", ("python", "-c", "import psycopg")),
    Example(DJANGO_IMAGE, "examples/django", ("python", "-c", "import django, psycopg, lockgate")),
    Example(ALEMBIC_IMAGE, "examples/alembic", ("python", "-c", "import alembic, sqlalchemy, psycopg, lockgate")),
    Example(
        FLYWAY_IMAGE, "examples/flyway", ("sh", "-c", "cd / && flyway -v"), flyway=True
    ),  # not the example's flyway.toml
)


@dataclass(frozen=True)
class Image:
    ref: str
    archive: Path  # docker-archive tarball holding the image under `ref`


class ImageBuildError(RuntimeError):
    pass


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


def may_hold_included(directory: str, rules: list[IgnoreRule]) -> bool:
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
        raise ImageBuildError(
            "no `TAG ?=` in Kubernetes' build/pause/Makefile: update devcluster.images.recipes.pause_flags"
        )
    return ("-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{tag.group(1)}-{kube_version}")


def config_problems(config: dict[str, object], expected: dict[str, object]) -> list[str]:
    return [
        f"{key} is {config.get(key)!r}, expected {value!r}"
        for key, value in expected.items()
        if config.get(key) != value
    ]


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

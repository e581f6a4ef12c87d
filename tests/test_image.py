"""The Dockerfile and its build context.

No Docker engine exists on these machines, so nothing here runs `docker build`. What can be
tested is tested: the Dockerfile's structure (stages, user, entrypoint, what the final stage
holds) against what the Helm chart and the operator expect, the build context .dockerignore
leaves, and - the nearest real thing to building the image - the builder stage's own
instructions replayed on this machine: its COPY lines applied to the context, its RUN lines
(`python -m venv`, `pip install .`) run as written into a fresh virtual environment, then
`lockgate` run from that environment with the final stage's ENV, a read-only venv and working
directory and only /tmp writable, as the chart runs the container.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart_support import CHART, REPO, one, render

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
EXAMPLE_MIGRATIONS = REPO / "examples" / "argocd" / "shop" / "migrations.yaml"
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|cc|clang|make|build-essential|python3?-dev|libpq-dev|apt-get\s+install|apk\s+add|pip\s+install|setup\.py)\b"
)


# a small Dockerfile reader


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name} has no {keyword}"
        return found[-1]

    def env(self) -> dict[str, str]:
        """ENV key=value pairs (later ones win), values unquoted, $VAR kept as written."""
        env: dict[str, str] = {}
        for args in self.all("ENV"):
            for item in shlex.split(args, posix=True):
                key, _, value = item.partition("=")
                env[key] = value
        return env


def read_dockerfile(path: Path = DOCKERFILE) -> list[Stage]:
    """Stages of a Dockerfile: line continuations joined, comments dropped, global ARGs substituted into FROM."""
    logical, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], ""), rest).split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(words[0], name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest))
    return stages


def exec_form(args: str) -> list[str]:
    value = yaml.safe_load(args)  # JSON arrays are YAML
    assert isinstance(value, list), f"{args!r} is not in exec form (a JSON array)"
    return value


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return read_dockerfile()


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def builder(stages: list[Stage]) -> Stage:
    return stages[0]


@pytest.fixture(scope="module")
def chart_pod() -> dict[str, Any]:
    return one(render(), "Deployment")["spec"]["template"]["spec"]


# the Dockerfile's structure


def test_a_builder_stage_and_a_final_stage_on_the_same_slim_python_3_11(
    stages: list[Stage], builder: Stage, final: Stage
) -> None:
    assert [s.name for s in stages] == ["builder", "final"]
    assert builder.base == final.base  # the venv's interpreter symlinks point into the base image
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", final.base), final.base


def test_the_final_stage_has_no_build_tools_and_copies_only_the_venv(builder: Stage, final: Stage) -> None:
    assert BUILD_TOOLS.search(" ".join(builder.all("RUN"))), "the reader should see the builder's installs"
    for command in final.all("RUN"):
        assert not BUILD_TOOLS.search(command), f"build tooling in the final stage: {command}"
    assert not final.all("ADD")
    copies = [shlex.split(c) for c in final.all("COPY")]
    venv = builder_venv(builder)
    assert copies == [["--from=builder", venv, venv]], (
        f"the final stage must copy only the venv from the builder: {copies}"
    )


def test_the_image_runs_as_the_non_root_user_the_chart_expects(final: Stage, chart_pod: dict[str, Any]) -> None:
    user, _, group = final.last("USER").partition(":")
    assert user.isdigit() and group.isdigit(), "USER must be numeric, so runAsNonRoot can verify it"
    assert int(user) != 0
    security = chart_pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (int(user), int(group)) == (security["runAsUser"], security["runAsGroup"])
    created = " ".join(final.all("RUN"))
    assert f"--uid {user}" in created and f"--gid {group}" in created


def test_entrypoint_and_cmd_are_what_the_chart_and_the_node_run(final: Stage, chart_pod: dict[str, Any]) -> None:
    assert exec_form(final.last("ENTRYPOINT")) == ["lockgate"]
    assert exec_form(final.last("CMD")) == ["run"]
    operator = chart_pod["containers"][0]
    assert "command" not in operator and operator["args"][0] == "run"


def test_the_environment_suits_a_read_only_root_filesystem(
    final: Stage, builder: Stage, chart_pod: dict[str, Any]
) -> None:
    env = final.env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    tmp_mounts = [m["mountPath"] for m in chart_pod["containers"][0]["volumeMounts"]]
    assert tmp_mounts == ["/tmp"] and env["HOME"].startswith("/tmp")  # HOME is inside the chart's emptyDir
    assert final.last("WORKDIR").startswith("/tmp")
    assert env["PATH"].split(":")[0] == f"{builder_venv(builder)}/bin"


def test_migrations_default_to_the_path_the_crd_and_the_operator_use(final: Stage) -> None:
    from lockgate.controller.spec import DEFAULT_MIGRATIONS_PATH

    crd = yaml.safe_load((REPO / "crds" / "lockgate.dev_schemamigrations.yaml").read_text())
    path = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["migrations"][
        "properties"
    ]["path"]
    assert final.env()["LOCKGATE_MIGRATIONS_DIR"] == path["default"] == DEFAULT_MIGRATIONS_PATH == "/migrations"
    assert "mkdir -p /migrations" in " ".join(final.all("RUN"))


def test_the_bake_your_migrations_in_pattern_is_documented_with_the_current_version() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert version == chart["appVersion"]
    text = DOCKERFILE.read_text()
    assert f"#   FROM ghcr.io/lockgate/lockgate:{version}\n#   COPY migrations/ /migrations/\n" in text


# the build context


def dockerignore_patterns() -> list[tuple[re.Pattern[str], bool]]:
    """.dockerignore as Docker reads it: one pattern a line, `!` re-includes, the last match wins,
    `*` stays within a path segment, `**` crosses them; a pattern matching a directory covers its contents."""
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        patterns.append((re.compile(regex), negate))
    return patterns


def build_context(destination: Path) -> list[str]:
    """Copy what the build context holds (the repository less .dockerignore) to `destination`."""
    patterns = dockerignore_patterns()
    kept = []
    for root, _, files in os.walk(REPO):
        for name in files:
            relative = os.path.relpath(os.path.join(root, name), REPO)
            parts = relative.split("/")
            candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
            excluded = False
            for regex, negate in patterns:
                if any(regex.fullmatch(c) for c in candidates):
                    excluded = not negate
            if not excluded:
                kept.append(relative)
                (destination / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / relative, destination / relative)
    return sorted(kept)


def test_the_build_context_holds_the_package_and_nothing_else(tmp_path: Path) -> None:
    kept = build_context(tmp_path)
    assert (
        "pyproject.toml" in kept
        and "operator/lockgate/cli.py" in kept
        and "operator/lockgate/controller/handlers.py" in kept
    )
    for path in kept:
        assert path in ("pyproject.toml", "README.md") or path.startswith("operator/lockgate/"), (
            f"{path} should not be in the build context"
        )
        assert "__pycache__" not in path and ".egg-info" not in path
    assert not any(p.startswith((".venv/", ".git/", "tests/", "charts/")) for p in kept)


# the builder's steps, replayed


def builder_venv(builder: Stage) -> str:
    for command in builder.all("RUN"):
        if match := re.search(r"python3? -m venv (\S+)", command):
            return match[1]
    raise AssertionError("the builder creates no virtual environment")


class Replay:
    """The image's filesystem paths mapped into a temporary directory."""

    def __init__(self, root: Path, context: Path) -> None:
        self.root, self.context = root, context
        self.workdir = root  # the base image's WORKDIR, /
        root.mkdir(parents=True, exist_ok=True)

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    def map(self, text: str, *image_paths: str) -> str:
        """Image paths in `text` replaced by their places here, in one pass (a mapped path is never mapped again)."""
        alternatives = "|".join(re.escape(p) for p in sorted(image_paths, key=len, reverse=True))
        return re.sub(rf"(?<![\w/])({alternatives})(?![\w-])", lambda m: str(self.path(m[1])), text)


def replay_builder(builder: Stage, replay: Replay, tools: Path) -> list[str]:
    """Run the builder's WORKDIR, COPY and RUN instructions; returns the commands run."""
    venv = builder_venv(builder)
    mapped = [venv]
    ran = []
    for keyword, args in builder.instructions:
        if keyword == "WORKDIR":
            mapped.append(args)
            replay.workdir = replay.path(args)
            replay.workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, destination = shlex.split(args)
            target = replay.path(destination) if destination.startswith("/") else replay.workdir / destination
            for source in sources:
                matches = glob.glob(str(replay.context / source))
                assert matches or "*" in source, (
                    f"COPY {source}: not in the build context"
                )  # a wildcard may match nothing (BuildKit)
                for match in matches:
                    if os.path.isdir(match):  # a directory's contents go into the destination
                        shutil.copytree(match, target, dirs_exist_ok=True)
                    elif destination.endswith("/"):
                        target.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(match, target / Path(match).name)
                    else:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(match, target)
        elif keyword == "RUN":
            if args.startswith("apt-get"):
                continue  # compilers for platforms without wheels; this machine installs from wheels
            command = replay.map(args, *mapped)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_NO_CACHE", "VIRTUAL_ENV", "PYTHON"))}
            env["PATH"] = f"{tools}:{env['PATH']}"  # `python` is the base interpreter, as in python:3.11-slim
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command],
                cwd=replay.workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=240,
            )
            assert result.returncode == 0, (
                f"builder step failed: RUN {args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
            ran.append(args)
        elif keyword == "ENV":
            pass  # the pip settings only (no cache, no version check); this replay may use pip's cache
        else:
            raise AssertionError(f"the replay does not know builder instruction {keyword}")
    return ran


def run_read_only(
    root: Path, writable: Path, argv: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run argv with the image's filesystem `root` read-only except `writable` (the chart's /tmp
    emptyDir): as root, bind mounts in a private mount namespace (file permissions do not stop
    root); otherwise, write permission removed for the run."""
    if os.geteuid() == 0:
        r, w = shlex.quote(str(root)), shlex.quote(str(writable))
        # /tmp first as its own mount, then the root recursively (keeping /tmp), then the root read-only.
        script = f'mount --bind {w} {w} && mount --rbind {r} {r} && mount -o remount,bind,ro {r} && cd {shlex.quote(str(cwd))} && exec "$@"'
        command = ["unshare", "--mount", "--propagation", "private", "bash", "-c", script, "sh", *argv]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    subprocess.run(["chmod", "-R", "a-w", str(root)], check=True)
    subprocess.run(["chmod", "-R", "u+w", str(writable)], check=True)
    try:
        return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(root)], check=True)


def test_the_builder_steps_install_lockgate_into_a_clean_venv_that_runs_read_only(
    builder: Stage, final: Stage, tmp_path: Path
) -> None:
    """The nearest real thing to building the image: the builder's steps, replayed here."""
    context = tmp_path / "context"
    context.mkdir()
    build_context(context)
    replay = Replay(tmp_path / "image", context)
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    ran = replay_builder(builder, replay, tools)
    assert any(re.search(r"/pip install( -\S+)* \.(\s|$)", r) for r in ran), (
        f"the builder should `pip install .`: {ran}"
    )

    venv = replay.path(builder_venv(builder))
    assert (venv / "bin" / "lockgate").exists()
    # The final stage: the venv, /migrations (here: the Argo CD example's scripts, baked in
    # as `COPY migrations/ /migrations/` would), /tmp as the chart's emptyDir; the rest read-only.
    migrations = replay.path("/migrations")
    migrations.mkdir(parents=True)
    scripts = yaml.safe_load(EXAMPLE_MIGRATIONS.read_text())["data"]
    for name, sql in scripts.items():
        (migrations / name).write_text(sql)
    tmp = replay.path("/tmp")
    tmp.mkdir(parents=True)
    workdir = replay.path(final.last("WORKDIR"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        k: replay.map(v.replace("$PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), builder_venv(builder), "/tmp", "/migrations")
        for k, v in final.env().items()
    }
    env["LANG"] = "C.UTF-8"
    before = sorted(str(p.relative_to(venv)) for p in venv.rglob("*"))

    def lockgate(*args: str, cwd: Path = workdir) -> subprocess.CompletedProcess[str]:
        return run_read_only(replay.root, tmp, ["lockgate", *args], env, cwd)

    # The emulation itself: the image's files cannot be written, /tmp can.
    probe = run_read_only(
        replay.root,
        tmp,
        [
            "sh",
            "-c",
            f"touch {tmp}/probe && ! touch {venv}/probe 2>/dev/null && ! touch {migrations}/probe 2>/dev/null",
        ],
        env,
        workdir,
    )
    assert probe.returncode == 0 and (tmp / "probe").exists() and not (venv / "probe").exists(), probe.stderr

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    result = lockgate("--version", cwd=migrations)  # a read-only working directory
    assert (result.returncode, result.stdout.strip()) == (0, f"lockgate {version}"), result.stderr
    result = lockgate("lint", cwd=replay.root)  # LOCKGATE_MIGRATIONS_DIR from the image's ENV; cwd `/`, read-only
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 error(s)" in result.stdout
    database = tmp / "shop.db"
    for phase in ("expand", "background", "contract"):
        result = lockgate("migrate", "--phase", phase, "--database-url", f"sqlite:///{database}")
        assert result.returncode == 0, f"{phase}: {result.stdout}{result.stderr}"
    with sqlite3.connect(database) as db:
        assert [row[1] for row in db.execute("PRAGMA table_info(users)")] == ["id", "email"]  # C2 dropped name
        assert db.execute("SELECT count(*) FROM lockgate_schema_history WHERE success").fetchone()[0] == len(scripts)
    # The operator's code and its dependencies import from the read-only venv.
    result = run_read_only(
        replay.root,
        tmp,
        [
            "python",
            "-c",
            "import kopf, kubernetes, prometheus_client, lockgate.controller.handlers, lockgate.controller.run",
        ],
        env,
        workdir,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(str(p.relative_to(venv)) for p in venv.rglob("*")) == before  # nothing was written into the venv

"""The Dockerfile, its build context, and the image built from it.

The Dockerfile's structure (stages, user, entrypoint, what the final stage holds) is checked
against what the Helm chart and the operator expect; the image itself (built with buildah by
devcluster.images and pulled by the node from the cluster's registry) runs in a pod as the chart runs it:
non-root, read-only root filesystem, only /tmp writable.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.images.inputs import context_files
from devcluster.images.recipes import dockerignore
from devcluster.kube import watch_until
from tests.chart_support import CHART, REPO, one, render

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
# One release's scripts in SQL that SQLite runs too (the examples' scripts are PostgreSQL's).
SCRIPTS = {
    "V1__users.sql": "CREATE TABLE users (\n    id bigint PRIMARY KEY,\n    name text NOT NULL\n);\n",
    "V2__users_email.sql": "ALTER TABLE users ADD COLUMN email text;\n",
    "A2__backfill_email.sql": "UPDATE users SET email = name || '@example.com' WHERE email IS NULL;\n",
    "C2__drop_name.sql": "ALTER TABLE users DROP COLUMN name;\n",
}
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


def builder_venv(builder: Stage) -> str:
    for command in builder.all("RUN"):
        if match := re.search(r"python3? -m venv (\S+)", command):
            return match[1]
    raise AssertionError("the builder creates no virtual environment")


# the build context


def test_the_build_context_holds_the_package_and_nothing_else() -> None:
    kept = context_files(REPO, dockerignore(DOCKERIGNORE.read_text()))  # what buildah is given
    assert (
        "pyproject.toml" in kept
        and "operator/lockgate/cli/__init__.py" in kept
        and "operator/lockgate/controller/handlers.py" in kept
    )
    for path in kept:
        assert path in ("pyproject.toml", "README.md") or path.startswith("operator/lockgate/"), (
            f"{path} should not be in the build context"
        )
        assert "__pycache__" not in path and ".egg-info" not in path
    assert not any(p.startswith((".venv/", ".git/", "tests/", "charts/")) for p in kept)


# the image itself, built from the Dockerfile, in a pod as the chart runs it


@pytest.mark.timeout(180)
def test_the_built_image_migrates_as_the_chart_runs_it(
    kube: Any, namespace: str, cluster: Any, chart_pod: dict[str, Any]
) -> None:
    """Non-root, read-only root filesystem, only /tmp writable, the scripts baked in at /migrations:
    lint, then every phase on SQLite, then the operator's imports; no build tools in the image."""
    scripts = SCRIPTS
    kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": "scripts"}, "data": scripts})
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    steps = [
        f'test "$(lockgate --version)" = "lockgate {version}"',
        "! touch /opt/lockgate/probe 2>/dev/null && ! touch /migrations/probe 2>/dev/null && touch /tmp/probe",
        "! command -v gcc && ! command -v cc",
        "cd / && lockgate lint | grep -q '0 error(s)'",  # LOCKGATE_MIGRATIONS_DIR from the image's ENV
        *(
            f"lockgate migrate --phase {p} --database-url sqlite:////tmp/shop.db"
            for p in ("expand", "background", "contract")
        ),
        "python -c 'import kopf, kubernetes, prometheus_client, lockgate.controller.handlers, lockgate.controller.run'",
        'python -c \'import sqlite3, json; db = sqlite3.connect("/tmp/shop.db");'
        ' print(json.dumps([[r[1] for r in db.execute("PRAGMA table_info(users)")],'
        ' db.execute("SELECT count(*) FROM lockgate_schema_history WHERE success").fetchone()[0]]))\''
        " > /dev/termination-log",
    ]
    container = {
        "name": "image",
        "image": cluster.real_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-ec", " && ".join(f"({step})" for step in steps)],
        "securityContext": chart_pod["containers"][0]["securityContext"],
        "volumeMounts": [{"name": "scripts", "mountPath": "/migrations"}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    pod = {
        "metadata": {"name": "image"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": chart_pod.get("securityContext") or {},
            "containers": [container],
            "volumes": [{"name": "scripts", "configMap": {"name": "scripts"}}, {"name": "tmp", "emptyDir": {}}],
        },
    }
    kube.core.create_namespaced_pod(namespace, pod)
    done = watch_until(
        kube.core.list_namespaced_pod,
        lambda p: p.status.phase in ("Succeeded", "Failed"),
        timeout=150,
        namespace=namespace,
        field_selector="metadata.name=image",
    )
    terminated = done.status.container_statuses[0].state.terminated
    log = kube.core.read_namespaced_pod_log("image", namespace)
    assert terminated.exit_code == 0, log
    columns, applied = json.loads(terminated.message)
    assert columns == ["id", "email"] and applied == len(scripts)  # C2 dropped name; every script once

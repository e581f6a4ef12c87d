"""`lockgate --version`, `exec` and `wait` load only the libraries they use.

Teams run `lockgate exec` or `lockgate wait` in every app pod's start-up: SQLAlchemy, psycopg,
the SQL parser and the Kubernetes client each cost a noticeable part of a second to import.
This pins which of them each command loads; benchmarks/startup.py measures the time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("sqlalchemy", "psycopg", "pglast", "kubernetes", "kopf")
# Runs the CLI in a fresh interpreter and writes, at exit, which heavy libraries it had imported.
PROBE = f"""
import atexit, json, sys
from lockgate.cli import main
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(
    sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r})))))
sys.exit(main(sys.argv[1:]))
"""


def loaded(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> tuple[int, set[str]]:
    out = tmp_path / "loaded.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *argv],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)} | (env or {}),
        timeout=60,
    )
    return done.returncode, set(json.loads(out.read_text()))


def test_version_loads_none_of_them(tmp_path: Path) -> None:
    assert loaded(tmp_path, "--version") == (0, set())


def test_exec_loads_the_database_libraries_but_not_the_sql_parser(tmp_path: Path) -> None:
    """exec holds the lock and writes the audit row: it never splits or parses SQL."""
    url = f"sqlite:///{tmp_path}/app.db"
    assert loaded(tmp_path, "exec", "--database-url", url, "--", "true") == (0, {"sqlalchemy", "psycopg"})


def test_wait_loads_the_kubernetes_client_only(tmp_path: Path) -> None:
    code, modules = loaded(
        tmp_path,
        *("wait", "--namespace", "shop", "--name", "shop", "--version", "2"),
        env={"KUBECONFIG": str(tmp_path / "missing")},  # no credentials: it stops before any request
    )
    assert (code, modules) == (2, {"kubernetes"})


def test_migrate_still_loads_what_it_needs(tmp_path: Path) -> None:
    """The probe sees imports at all: a command that parses SQL has the parser loaded."""
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "V1__t.sql").write_text("CREATE TABLE t (id int);")
    url = f"sqlite:///{tmp_path}/app.db"
    code, modules = loaded(tmp_path, "migrate", "--database-url", url, "--dir", str(tmp_path / "migrations"))
    assert (code, modules) == (0, {"sqlalchemy", "psycopg", "pglast"})

"""Which libraries a `lockgate` command loads: the CLI run in a fresh interpreter, its modules read at exit.

Teams run `lockgate exec` or `lockgate wait` in every app pod's start-up: SQLAlchemy (no longer a
dependency of the runner), psycopg, the SQL parser and the Kubernetes client each cost a noticeable
part of a second to import. benchmarks/startup.py measures the time; the tests pin the imports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("sqlalchemy", "psycopg", "pglast", "kubernetes", "kopf")
# Writes, at exit, the heavy libraries imported and every top-level module from outside the
# standard library (but the venv's setuptools shim, which its .pth file loads into every process).
PROBE = f"""
import atexit, json, sys
from lockgate.cli import main
out = sys.argv.pop(1)
def report():
    top = {{m.split(".")[0] for m in sys.modules}}
    outside = top - set(sys.stdlib_module_names) - {{"__main__", "_distutils_hack"}}
    open(out, "w").write(json.dumps([sorted(top & set({HEAVY!r})), sorted(outside)]))
atexit.register(report)
sys.exit(main(sys.argv[1:]))
"""


def probe(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> tuple[int, set[str], set[str]]:
    """Exit code, heavy libraries loaded, top-level modules loaded from outside the standard library."""
    out = tmp_path / "loaded.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *argv],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)} | (env or {}),
        timeout=60,
    )
    heavy, outside = json.loads(out.read_text())
    return done.returncode, set(heavy), set(outside)


def loaded(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> tuple[int, set[str]]:
    """Exit code and the heavy libraries loaded."""
    code, heavy, _ = probe(tmp_path, *argv, env=env)
    return code, heavy

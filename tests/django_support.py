"""Run the Django example's real `manage.py` (examples/django) against a test database."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DJANGO = Path(__file__).resolve().parents[1] / "examples" / "django"
MANAGE = [sys.executable, "manage.py"]
MIGRATE = [*MANAGE, "migrate", "--noinput"]
LOCKGATE_EXEC = [sys.executable, "-m", "lockgate", "exec", "--lock-wait", "300", "--"]
# What `manage.py migrate` records in django_migrations for the expand side of release 2, in order.
EXPAND_MIGRATIONS = [("ledger", "0001_initial"), ("ledger", "0002_seed"), ("ledger", "0003_note_text")]


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def last_line(self) -> str:
        """The last line of stderr: where Django and Alembic put the error."""
        lines = self.err.strip().splitlines()
        return lines[-1] if lines else ""


def django_env(url: str, **extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    return environment | {"LOCKGATE_DATABASE_URL": url, "PYTHONDONTWRITEBYTECODE": "1"} | extra


def run(command: list[str], url: str, cwd: Path = DJANGO, **extra: str) -> Run:
    done = subprocess.run(command, cwd=cwd, env=django_env(url, **extra), capture_output=True, text=True, timeout=300)
    return Run(done.returncode, done.stdout, done.stderr)


def race(command: list[str], url: str, replicas: int, cwd: Path = DJANGO) -> list[Run]:
    """`replicas` copies of `command` started at once, as replicas that migrate at start-up are."""
    processes = [
        subprocess.Popen(
            command, cwd=cwd, env=django_env(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(replicas)
    ]
    return [Run(p.wait(timeout=300), *p.communicate()) for p in processes]

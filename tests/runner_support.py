"""Helpers for runner tests: write migration directories, run the CLI, read the history."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


def lockgate(*args: str, url: str | None = None, timeout: float = 120, **env: str) -> Result:
    """Run the real CLI in a subprocess, the way a Job or CI step does."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")} | env
    if url:
        environment["LOCKGATE_DATABASE_URL"] = url
    done = subprocess.run(
        [sys.executable, "-m", "lockgate", *args], capture_output=True, text=True, env=environment, timeout=timeout
    )
    return Result(done.returncode, done.stdout, done.stderr)


def popen(*args: str, url: str) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")} | {
        "LOCKGATE_DATABASE_URL": url
    }
    return subprocess.Popen(
        [sys.executable, "-m", "lockgate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql, params or None)
        return cursor.fetchall() if cursor.description else []


def history(url: str, table: str = "lockgate_schema_history") -> list[tuple[Any, ...]]:
    """(version, phase, script, success) in installed order."""
    return query(url, f"SELECT version, phase, script, success FROM {table} ORDER BY installed_rank")

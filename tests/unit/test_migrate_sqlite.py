"""The zero-setup local default: the same commands on a SQLite file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.runner_support import lockgate, write


def test_sqlite_migrates_with_the_same_semantics(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    d = write(
        tmp_path / "m",
        {
            "V1__users.sql": "CREATE TABLE users (id integer PRIMARY KEY, name text DEFAULT 'a;b');",
            "V2__email.sql": "ALTER TABLE users ADD COLUMN email text;",
            "C2__noop.sql": "SELECT 1;",
        },
    )
    assert lockgate("migrate", "--dir", str(d), url=url).code == 0
    assert lockgate("migrate", "--dir", str(d), "--phase", "contract", url=url).code == 0
    with sqlite3.connect(tmp_path / "app.db") as conn:
        rows = conn.execute(
            "SELECT version, phase, success FROM lockgate_schema_history ORDER BY installed_rank"
        ).fetchall()
    assert rows == [("1", "expand", 1), ("2", "expand", 1), ("2", "contract", 1)]
    assert lockgate("migrate", "--dir", str(d), "--json", url=url).json["applied"] == []


def test_sqlite_failure_rolls_back_ddl_too(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    d = write(tmp_path / "m", {"V1__half.sql": "CREATE TABLE a (id int);\nINSERT INTO nope VALUES (1);"})
    result = lockgate("migrate", "--dir", str(d), "--json", url=url)
    assert result.code == 1 and result.json["error"]["script"] == "V1__half.sql"
    with sqlite3.connect(tmp_path / "app.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "a" not in tables


def test_sqlite_lock_file_keeps_runners_apart(tmp_path: Path) -> None:
    import fcntl

    url = f"sqlite:///{tmp_path / 'app.db'}"
    d = write(tmp_path / "m", {"V1__a.sql": "CREATE TABLE a (id int);"})
    with open(tmp_path / "app.db.lockgate-lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert lockgate("migrate", "--dir", str(d), "--lock-wait", "0.5", url=url).code == 3
    assert lockgate("migrate", "--dir", str(d), "--lock-wait", "0.5", url=url).code == 0


def test_migrate_and_undo_write_the_summary_file_when_the_scripts_do_not_load(tmp_path: Path) -> None:
    """The operator reads the summary from the termination message: a bad file name must reach it too."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    d = write(tmp_path / "m", {"V1__a.sql": "SELECT 1;", "not-a-migration.sql": "SELECT 1;"})
    for command, extra, target in (("migrate", ["--target", "1"], "1"), ("undo", ["--to", "0"], "0")):
        summary = tmp_path / f"{command}.json"
        result = lockgate(command, "--dir", str(d), "--summary-file", str(summary), *extra, url=url)
        assert result.code == 4, result.err
        report = json.loads(summary.read_text())
        assert report["command"] == command and report["exit_code"] == 4 and report["target"] == target
        assert "not-a-migration.sql" in report["problems"][0]

"""The shop sample app (examples/shop/app/shop.py) as a process against a real PostgreSQL: each release's
endpoints, readiness that follows the schema (V1, V2 expand, C2 contract), and the SIGTERM drain."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from devcluster.postgres import free_port

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "examples" / "shop" / "app" / "shop.py"
MIGRATIONS = REPO / "examples" / "shop" / "migrations"


@dataclass
class App:
    process: subprocess.Popen[str]
    port: int
    _log: str | None = None

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def log(self) -> str:
        """Everything it printed; kills it if it still runs."""
        if self._log is None:
            self.process.kill()
            self._log = self.process.communicate()[0]
        return self._log


@contextmanager
def shop(database_url: str, release: str, shutdown_delay: float = 1.0) -> Iterator[App]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "RELEASE": release, "PORT": str(port)}
    env["SHUTDOWN_DELAY"] = str(shutdown_delay)
    process = subprocess.Popen(
        [sys.executable, str(APP)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    app = App(process, port)
    try:
        wait_until_listening(app)
        yield app
    finally:
        app.log()


def wait_until_listening(app: App, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.process.poll() is not None:
            raise AssertionError(f"shop.py exited ({app.process.returncode}): {app.log()}")
        try:
            app.request("GET", "/release")
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"shop.py not listening within {timeout}s: {app.log()}")


def migrate(database_url: str, script: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute((MIGRATIONS / script).read_text())


def test_readiness_follows_each_release_schema(database_url: str) -> None:
    secrets = [database_url, *filter(None, [conninfo_to_dict(database_url).get("password")])]
    with shop(database_url, "1") as release_1, shop(database_url, "2") as release_2:
        assert release_1.request("GET", "/release") == (200, {"release": "1"})
        assert release_1.request("GET", "/healthz")[0] == 503  # no table yet

        migrate(database_url, "V1__create_customers.sql")
        assert release_1.request("GET", "/healthz")[0] == 200
        status, created = release_1.request("POST", "/customers", {"name": "Ada Lovelace"})
        assert status == 201 and created["full_name"] == "Ada Lovelace" and created["created_at"]
        assert release_1.request("GET", "/customers") == (200, [created])
        status, body = release_2.request("GET", "/healthz")
        assert status == 503 and body["error"]["sqlstate"] == "42703"  # undefined column: email

        migrate(database_url, "V2__add_email.sql")  # expand: both releases work
        assert release_2.request("GET", "/healthz")[0] == 200
        status, created = release_2.request("POST", "/customers", {"name": "Alan Turing"})
        assert status == 201 and created["email"] == "alan.turing@example.com"
        assert [row["full_name"] for row in release_2.request("GET", "/customers")[1]] == [
            "Alan Turing",
            "Ada Lovelace",
        ]
        assert release_1.request("GET", "/healthz")[0] == 200

        migrate(database_url, "C2__drop_created_at.sql")  # contract: release 1 breaks, release 2 does not
        status, body = release_1.request("GET", "/customers")
        assert status == 500 and body["error"]["sqlstate"] == "42703" and "created_at" in body["error"]["message"]
        assert release_1.request("GET", "/healthz")[0] == 503
        assert release_1.request("POST", "/customers")[0] == 500
        assert release_2.request("GET", "/healthz")[0] == 200
        assert release_2.request("GET", "/customers")[0] == 200
        assert not any(secret in json.dumps(body) + release_1.log() for secret in secrets)


def test_sigterm_stops_readiness_then_exits_cleanly(database_url: str) -> None:
    migrate(database_url, "V1__create_customers.sql")
    delay = 1.0
    with shop(database_url, "1", shutdown_delay=delay) as app:
        assert app.request("GET", "/healthz")[0] == 200
        stopped_at = time.monotonic()
        app.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        assert app.request("GET", "/healthz") == (503, {"status": "stopping"})
        assert app.request("GET", "/customers")[0] == 200  # still serving while the Service drops the pod
        assert app.process.wait(timeout=delay + 5) == 0
        assert time.monotonic() - stopped_at >= delay
        log = app.log()
        assert "release 1 serving" in log and "SIGTERM" in log and "stopped" in log
        assert len(log.splitlines()) == 3  # start, SIGTERM, stop: no line per request

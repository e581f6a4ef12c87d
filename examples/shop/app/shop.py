"""The shop: a small HTTP service on one PostgreSQL table, in two releases whose code needs different schemas.

Release 1 reads and writes `customers.created_at`; release 2 reads and writes `email` (examples/shop/migrations:
V2 adds it, C2 drops `created_at`). Readiness runs the release's own query, so a release-2 pod is not ready
before its schema exists, and a release-1 pod stops being ready once the contract has run.

    GET  /customers   the five newest customers            200, or 500 on a database error
    POST /customers   {"name": ...} (optional) adds one    201, or 500
    GET  /healthz     readiness                            200, or 503 (schema missing, database down, stopping)
    GET  /release     {"release": "1"}

Environment: DATABASE_URL (never printed), RELEASE ("1" or "2"), PORT (8080), SHUTDOWN_DELAY (5 seconds
of serving, not ready, after SIGTERM, so the Service drops the pod before it stops).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict


@dataclass(frozen=True)
class Release:
    name: str
    select: str  # the newest customers, LIMIT %(limit)s; readiness runs it with LIMIT 0
    insert: str  # one customer from %(name)s and %(email)s, RETURNING what `select` reads


RELEASES = {
    release.name: release
    for release in (
        Release(
            name="1",
            select="SELECT id, full_name, created_at FROM customers ORDER BY id DESC LIMIT %(limit)s",
            insert="INSERT INTO customers (full_name, created_at) VALUES (%(name)s, now()) RETURNING id, full_name, created_at",
        ),
        Release(
            name="2",
            select="SELECT id, full_name, email FROM customers ORDER BY id DESC LIMIT %(limit)s",
            insert="INSERT INTO customers (full_name, email) VALUES (%(name)s, %(email)s) RETURNING id, full_name, email",
        ),
    )
}


class Database:
    """One autocommit connection per server thread (ThreadingHTTPServer runs one per client connection)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._local = threading.local()

    def rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            return self._rows(sql, params)
        except psycopg.OperationalError:  # a dropped connection (a server restart, say): reconnect once
            self.close()
            return self._rows(sql, params)

    def _rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        connection = getattr(self._local, "connection", None)
        if connection is None or connection.closed:
            connection = self._local.connection = psycopg.connect(self._url, autocommit=True, connect_timeout=5)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            names = [column.name for column in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()


def error_body(error: psycopg.Error) -> dict[str, Any]:
    """SQLSTATE and the server's one-line message. libpq's own (connection) errors never quote a password,
    and a malformed DATABASE_URL, whose error could, stops the app at startup."""
    message = error.diag.message_primary or (str(error).strip().splitlines() or [type(error).__name__])[0]
    return {"error": {"sqlstate": error.sqlstate, "message": message}}


def customer_params(body: bytes) -> dict[str, Any]:
    try:
        name = json.loads(body or b"{}").get("name")
    except (ValueError, AttributeError):
        name = None
    name = name if isinstance(name, str) and name.strip() else "Walk-in customer"
    return {"name": name, "email": name.lower().replace(" ", ".") + "@example.com"}  # as A2's backfill


class Shop:
    def __init__(self, release: Release, database: Database) -> None:
        self.release = release
        self.database = database
        self.stopping = threading.Event()

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        route = (method, path.split("?")[0])
        if route == ("GET", "/healthz"):
            return self.readiness()
        if route == ("GET", "/release"):
            return 200, {"release": self.release.name}
        try:
            if route == ("GET", "/customers"):
                return 200, self.database.rows(self.release.select, {"limit": 5})
            if route == ("POST", "/customers"):
                return 201, self.database.rows(self.release.insert, customer_params(body))[0]
        except psycopg.Error as error:
            return 500, error_body(error)
        return 404, {"error": {"message": f"no route {method} {route[1]}"}}

    def readiness(self) -> tuple[int, Any]:
        if self.stopping.is_set():
            return 503, {"status": "stopping"}
        try:
            self.database.rows(self.release.select, {"limit": 0})
        except psycopg.Error as error:
            return 503, {"status": "unavailable", **error_body(error)}
        return 200, {"status": "ready"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client's requests share its thread and connection
    timeout = 60  # an idle keep-alive connection gives its thread (and database connection) back
    server: Server

    def handle(self) -> None:
        try:
            super().handle()
        finally:
            self.server.shop.database.close()

    def do_GET(self) -> None:
        self.respond(*self.server.shop.handle("GET", self.path, b""))

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.respond(*self.server.shop.handle("POST", self.path, body))

    def respond(self, status: int, payload: Any) -> None:
        data = json.dumps(payload, default=str).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.server.shop.stopping.is_set():
            self.send_header("Connection", "close")  # keep-alive clients reconnect, to a pod that stays
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no line per request


class Server(ThreadingHTTPServer):
    def __init__(self, port: int, shop: Shop) -> None:
        super().__init__(("0.0.0.0", port), Handler)
        self.shop = shop


def log(message: str) -> None:
    print(f"shop: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Settings:
    url: str
    release: Release
    port: int
    shutdown_delay: float

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Settings:
        """Or SystemExit naming what to set; never with the URL in it."""
        url, release = env.get("DATABASE_URL", ""), env.get("RELEASE", "")
        if not url:
            raise SystemExit("shop: DATABASE_URL is not set (the Secret's url)")
        try:
            conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            raise SystemExit("shop: DATABASE_URL is not a valid PostgreSQL URL") from None
        if release not in RELEASES:
            raise SystemExit(f"shop: RELEASE must be one of {', '.join(RELEASES)}, not {release!r}")
        try:
            return cls(url, RELEASES[release], int(env.get("PORT", "8080")), float(env.get("SHUTDOWN_DELAY", "5")))
        except ValueError as error:
            raise SystemExit(f"shop: PORT and SHUTDOWN_DELAY must be numbers: {error}") from None


def main() -> int:
    settings = Settings.from_env(dict(os.environ))
    shop = Shop(settings.release, Database(settings.url))
    server = Server(settings.port, shop)
    delay = settings.shutdown_delay

    def stop(signum: int, frame: object) -> None:
        if shop.stopping.is_set():
            return
        shop.stopping.set()
        log(f"{signal.Signals(signum).name}: not ready, serving {delay:g}s more, then stopping")
        threading.Timer(delay, server.shutdown).start()  # shutdown() waits for serve_forever: not from here

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(f"release {settings.release.name} serving on :{settings.port}")
    server.serve_forever()
    server.server_close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

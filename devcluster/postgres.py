"""A throwaway PostgreSQL cluster: initdb + pg_ctl in a temporary directory on a free port.

Used by the test suite (session-scoped) and by `make demo`; `standby_of` adds a streaming
standby (pg_basebackup -R) for tests of replication lag. PostgreSQL refuses to run as
root, so as root the server runs as the `postgres` user that Debian's package creates.
Pods of the local node reach it on the node's address, from the pod network only.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def find_pg_bin() -> Path:
    """The directory holding initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/N/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    raise RuntimeError("PostgreSQL server binaries not found: run `apt-get install -y postgresql` (make test does)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One PostgreSQL server; `url` connects as the superuser `postgres` with a password."""

    password = "lockgate-test-password"

    def __init__(
        self,
        base_dir: str | None = None,
        port: int | None = None,
        durable: bool = False,
        pod_access: tuple[str, str] | None = None,
    ) -> None:
        self.bin = find_pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="lockgate-pg-", dir=base_dir))
        self.data = self.dir / "data"
        self.port = port or free_port()
        self.log = self.dir / "postgres.log"
        self._user = "postgres" if os.geteuid() == 0 else None
        self.durable = durable  # False trades crash safety for speed: fine for throwaway test data
        self.pod_access = pod_access  # (node address to listen on, pod network allowed to connect)

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        self._own_dir()
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password)
        if self._user:
            os.chown(pwfile, pwd.getpwnam(self._user).pw_uid, -1)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )
        pwfile.unlink()
        listen = "127.0.0.1"
        if self.pod_access:
            address, network = self.pod_access
            listen += f",{address}"
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {network} scram-sha-256\n")
        self._pg_ctl_start(listen)
        return self

    def start_standby(self, primary: PostgresServer, name: str) -> PostgresServer:
        """Start as a hot streaming standby of `primary`, its walsender named `name` in pg_stat_replication.

        The primary needs nothing of its own: initdb's defaults (wal_level=replica, max_wal_senders=10)
        and its pg_hba.conf (`host replication all 127.0.0.1/32 scram-sha-256`) allow a standby on
        this host. pg_basebackup -R copies the primary and writes primary_conninfo.
        """
        self._own_dir()
        self._run(
            "pg_basebackup",
            *("-D", str(self.data), "-R", "-X", "stream", "-c", "fast"),
            *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"),
            env={"PGPASSWORD": primary.password},  # not on the command line, where ps shows it
        )
        self._pg_ctl_start("127.0.0.1", f"-c cluster_name={name}")
        primary.wait_for_standby(name)
        return self

    def wait_for_standby(self, name: str, timeout: float = 30) -> None:
        """Until the standby `name` streams from this server (pg_ctl -w only waits for connections)."""
        import psycopg

        deadline = time.monotonic() + timeout
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not conn.execute(
                "SELECT 1 FROM pg_stat_replication WHERE application_name = %s AND state = 'streaming'", (name,)
            ).fetchone():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"standby {name} did not stream within {timeout:g} s")
                time.sleep(0.1)

    def _own_dir(self) -> None:
        if self._user:
            owner = pwd.getpwnam(self._user)
            os.chmod(self.dir, 0o755)
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)

    def _pg_ctl_start(self, listen: str, *settings: str) -> None:
        # A standby needs max_connections at least the primary's: both get the same options.
        options = f"-p {self.port} -k {self.dir} -c listen_addresses={listen} -c max_connections=300"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        options = " ".join((options, *settings))
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def _run(self, tool: str, *args: str, check: bool = True, env: dict[str, str] | None = None) -> None:
        command = [str(self.bin / tool), *args]
        if self._user:
            command = ["runuser", "-u", self._user, "--", *command]
        environment = os.environ | env if env else None
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.dir, env=environment)
        if check and result.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr.strip()}\n{log}")


@contextmanager
def standby_of(primary: PostgresServer, name: str = "replica1") -> Iterator[PostgresServer]:
    """A streaming standby of `primary` on another free port, always stopped and removed afterwards."""
    standby = PostgresServer(base_dir=str(primary.dir.parent), durable=primary.durable)
    try:
        yield standby.start_standby(primary, name)
    finally:
        standby.stop()


class ExternalPostgres:
    """A server named by LOCKGATE_TEST_DATABASE_URL; tests get their own databases on it."""

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        self._url = make_url(url)
        self.url = url

    def url_for(self, database: str) -> str:
        return self._url.set(database=database).render_as_string(hide_password=False)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def stop(self) -> None:
        pass


def in_cluster_url(url: str, node_address: str | None = None) -> str:
    """The URL pods use for the same database: on kind, PostgreSQL runs in the cluster and the tests
    reach it through a port-forward (LOCKGATE_TEST_DATABASE_URL_IN_CLUSTER); on the local node,
    pods reach this host's server on the node's address (their 127.0.0.1 is their own)."""
    import os

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if inside := os.environ.get("LOCKGATE_TEST_DATABASE_URL_IN_CLUSTER"):
        return make_url(inside).set(database=parsed.database).render_as_string(hide_password=False)
    if node_address and parsed.host == "127.0.0.1":
        return parsed.set(host=node_address).render_as_string(hide_password=False)
    return url

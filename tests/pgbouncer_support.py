"""A throwaway PgBouncer in front of the tests' PostgreSQL, in a chosen pool mode."""

from __future__ import annotations

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

from sqlalchemy.engine import make_url

from devcluster.postgres import free_port


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or next((p for p in ("/usr/sbin/pgbouncer",) if os.path.exists(p)), None)


@contextmanager
def pgbouncer(upstream_url: str, pool_mode: str, pool_size: int) -> Iterator[str]:
    """Start PgBouncer for the database of `upstream_url`; yield the URL that goes through it."""
    binary = pgbouncer_binary()
    assert binary, "pgbouncer is not installed"
    url = make_url(upstream_url)
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="lockgate-pgbouncer-"))
    os.chmod(directory, 0o755)
    (directory / "users.txt").write_text(f'"{url.username}" "{url.password}"\n')
    (directory / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={url.host} port={url.port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = scram-sha-256\nauth_file = {directory}/users.txt\n"
        f"pool_mode = {pool_mode}\ndefault_pool_size = {pool_size}\nmax_client_conn = 100\n"
        f"logfile = {directory}/pgbouncer.log\n"
    )
    command = [binary, str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root, like PostgreSQL
        owner = pwd.getpwnam("postgres")
        for path in directory.iterdir():
            os.chown(path, owner.pw_uid, owner.pw_gid)
        os.chown(directory, owner.pw_uid, owner.pw_gid)
        command = ["runuser", "-u", "postgres", "--", *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_port(port, process)
        yield url.set(port=port).render_as_string(hide_password=False)
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_for_port(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, f"pgbouncer exited: {process.stderr.read() if process.stderr else ''}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("pgbouncer did not listen within 10 s")

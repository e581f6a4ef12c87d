"""The test cluster outside pytest.

    python -m devcluster up --dir DIR     start it in the background; the admin kubeconfig is DIR/kubeconfig,
                                          the registry's HOST:PORT in DIR/registry-host
    python -m devcluster down --dir DIR   stop it

`up` builds the binaries and images if needed (progress on stderr), then returns once the control
plane and the node are ready, or exits 1 with the failing component's log tail. `down` stops it and
puts the host back as it was (processes, mounts, links, iptables, cgroups, sysctls).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from devcluster.binaries import REPO, cluster_bin_dir, registry_bin
from devcluster.clusters import LocalCluster
from devcluster.images.targets import build_images

READY_TIMEOUT = 180.0
DOWN_TIMEOUT = 60.0


def _pid_file(directory: Path) -> Path:
    return directory / "cluster.pid"


def _running_pid(directory: Path) -> int | None:
    try:
        pid = int(_pid_file(directory).read_text())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


def up(directory: Path) -> int:
    if pid := _running_pid(directory):
        print(
            f"a cluster is already up in {directory} (pid {pid}); `python -m devcluster down --dir {directory}` first",
            file=sys.stderr,
        )
        return 1
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ready").unlink(missing_ok=True)
    bin_dir = cluster_bin_dir()
    registry_bin()
    build_images()  # here, not in the background process, so its progress reaches the terminal
    command = [
        sys.executable,
        "-m",
        "devcluster",
        "serve",
        "--dir",
        str(directory),
        "--bin-dir",
        str(bin_dir),
    ]
    with open(directory / "cluster.log", "ab") as log:
        server = subprocess.Popen(
            command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    _pid_file(directory).write_text(str(server.pid))
    deadline = time.monotonic() + READY_TIMEOUT + lock_wait()  # the host lock may be another cluster's first
    while not (directory / "ready").exists():
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            _pid_file(directory).unlink(missing_ok=True)
            tail = "\n".join((directory / "cluster.log").read_text(errors="replace").splitlines()[-40:])
            print(f"the test cluster failed to start (log {directory / 'cluster.log'}):\n{tail}", file=sys.stderr)
            return 1
        time.sleep(0.2)
    print(
        f"lockgate test cluster up: kubeconfig written to {directory / 'kubeconfig'}, its registry "
        f"http://{(directory / 'registry-host').read_text().strip()} (pid {server.pid} in {_pid_file(directory)}); "
        f"stop it with: python -m devcluster down --dir {directory}"
    )
    return 0


def lock_wait() -> float:
    """How long `serve` may wait for another local cluster to go (LocalCluster reads the same variable)."""
    return float(os.environ.get("LOCKGATE_CLUSTER_LOCK_WAIT", "0"))


def serve(directory: Path, bin_dir: Path) -> int:
    """The background process of `up`: runs the cluster until SIGTERM."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    cluster = LocalCluster(directory, bin_dir=bin_dir)
    try:
        cluster.start()
    except Exception as e:
        print(f"error: {e}", flush=True)
        return 1
    try:
        assert cluster.registry is not None
        (directory / "registry-host").write_text(
            f"{cluster.registry.host}\n"
        )  # scripts: REGISTRY=$(cat DIR/registry-host)
        print(f"up in {cluster.startup_seconds:.1f}s; kubeconfig {cluster.kubeconfig}", flush=True)
        (directory / "ready").touch()
        stop.wait()
    finally:
        cluster.stop()
        (directory / "ready").unlink(missing_ok=True)
        print("stopped", flush=True)
    return 0


def down(directory: Path) -> int:
    pid = _running_pid(directory)
    if pid is None:
        print(f"no test cluster is running in {directory}")
        _pid_file(directory).unlink(missing_ok=True)
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + DOWN_TIMEOUT
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)  # its components die with it (PR_SET_PDEATHSIG)
    _pid_file(directory).unlink(missing_ok=True)
    print(f"lockgate test cluster in {directory} is down")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # Not our child, so a finished process can linger as a zombie until init reaps it.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "down", "serve"):
        sub = commands.add_parser(name, help=argparse.SUPPRESS if name == "serve" else f"{name} the test cluster")
        sub.add_argument("--dir", type=Path, required=True, help="where the kubeconfig, logs and state go")
        if name == "serve":
            sub.add_argument("--bin-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    directory = args.dir.resolve()
    if args.command == "up":
        return up(directory)
    if args.command == "serve":
        return serve(directory, args.bin_dir)
    return down(directory)


if __name__ == "__main__":
    sys.exit(main())

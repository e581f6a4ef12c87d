"""Starts one container's process, run as `unshare --mount --propagation private python -I
sandbox.py SPEC.json` by the node agent: in that private mount namespace it bind-mounts the
volumes and the termination-message file at the container's paths, then execs the command
with the environment it was given. Standalone (stdlib only): `-I` keeps the container's
PYTHON* variables away from it.

SPEC.json: {"mounts": [{"source", "target", "read_only"}], "runtime": [paths], "workdir", "argv", "start_error"}.
`runtime` are the host paths the "image" consists of here (the repository with its venv, the
base Python): a volume mounted over one of their parents (an emptyDir at /tmp while the
checkout lives under /tmp) must not hide them, as it would never hide a real image's /opt.
A command that cannot be executed is reported the way container runtimes do: exit code 128
and the reason in the `start_error` file.
"""

import json
import os
import shutil
import stat
import subprocess
import sys

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
START_ERROR_EXIT = 128


def bind(source_fd: int, target: str, read_only: bool) -> None:
    """Bind-mount an opened source: its path may already be hidden by an earlier mount."""
    if stat.S_ISDIR(os.fstat(source_fd).st_mode):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "ab").close()
    mount = shutil.which("mount", path=SYSTEM_PATH) or "mount"
    source = f"/proc/self/fd/{source_fd}"
    subprocess.run([mount, "--no-canonicalize", "--bind", source, target], check=True, pass_fds=(source_fd,))
    if read_only:
        subprocess.run([mount, "-o", "remount,bind,ro", target], check=True)


def mount_all(mounts: list, runtime: list) -> None:
    # Sources are opened before anything is mounted (an emptyDir at /tmp would hide a source
    # under /tmp), and parents are mounted before what is mounted inside them.
    opened = [(os.open(m["source"], os.O_PATH), m) for m in mounts]
    kept = [(os.open(path, os.O_PATH), path) for path in runtime if hidden(path, mounts)]
    for fd, m in sorted(opened, key=lambda pair: pair[1]["target"].rstrip("/").count("/")):
        bind(fd, m["target"], m["read_only"])
        os.close(fd)
    for fd, path in kept:  # put the runtime back where the volumes covered it
        bind(fd, path, read_only=True)
        os.close(fd)


def hidden(path: str, mounts: list) -> bool:
    """Whether a mount covers `path` (a mount at the path itself, or at one of its parents)."""
    return any(path == m["target"].rstrip("/") or path.startswith(m["target"].rstrip("/") + "/") for m in mounts)


def fail(spec: dict, message: str) -> None:
    with open(spec["start_error"], "w") as f:
        f.write(message)
    print(message, file=sys.stderr)
    sys.exit(START_ERROR_EXIT)


def main(spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    try:
        mount_all(spec["mounts"], spec.get("runtime", []))
        os.makedirs(spec["workdir"], exist_ok=True)
        os.chdir(spec["workdir"])
    except (OSError, subprocess.CalledProcessError) as e:
        fail(spec, f"failed to create containerd task: {e}")
    argv = spec["argv"]
    executable = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=os.environ.get("PATH", SYSTEM_PATH))
    if not executable:
        fail(spec, f'exec: "{argv[0]}": executable file not found in $PATH')
    try:
        os.execv(executable, argv)
    except OSError as e:
        fail(spec, f'exec: "{argv[0]}": {e.strerror}')


if __name__ == "__main__":
    main(sys.argv[1])

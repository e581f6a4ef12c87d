"""Long-running child processes (control-plane components, the node's daemons, the operator):
output to a log file, own process group, stopped with SIGTERM then SIGKILL."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path


class ComponentError(RuntimeError):
    """A component failed to start; the message carries the tail of its log."""


def _die_with_parent(argv: list[str]) -> list[str]:
    """A control plane must not outlive a pytest or `up` process killed with SIGKILL. (setpriv,
    from util-linux, rather than a preexec_fn, which is unsafe in a process with threads.)"""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


class ManagedProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.name = name
        self.argv = _die_with_parent(list(argv)) if die_with_parent else list(argv)
        self.log_path = log_path
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self._cwd,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    @property
    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen else None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.splitlines()[-lines:])

    def wait(self, timeout: float | None = None) -> int:
        assert self._popen is not None, f"{self.name} was never started"
        return self._popen.wait(timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM to the whole process group, SIGKILL if it has not exited after `timeout`."""
        if not self.is_running:
            return self.returncode
        self._signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int | None:
        if self.is_running:
            self._signal(signal.SIGKILL)
            return self.wait(10)
        return self.returncode

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The process group stopped (SIGSTOP) for the body of the `with`, then continued: for tests
        that must order what a component sees (a kubelet that takes a pod in only after an outage began)."""
        self._signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        assert self._popen is not None
        try:
            os.killpg(self._popen.pid, signum)
        except ProcessLookupError:
            pass

    def __repr__(self) -> str:
        state = "running" if self.is_running else f"exited {self.returncode}"
        return f"<{self.name} pid={self.pid} {state} log={self.log_path}>"


def wait_until_ready(process: ManagedProcess, ready: Callable[[], bool], timeout: float) -> None:
    """Poll `ready` (a cheap health check) until it holds; fail fast with the log tail if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.is_running:
            raise ComponentError(
                f"{process.name} exited with {process.returncode} while starting; log {process.log_path}:\n{process.log_tail()}"
            )
        if ready():
            return
        time.sleep(0.2)
    raise ComponentError(
        f"{process.name} not ready after {timeout:.0f}s; log {process.log_path}:\n{process.log_tail()}"
    )

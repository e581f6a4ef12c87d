"""`lockgate exec -- COMMAND`: run another tool (Django's migrate, Alembic, a script) while
holding the migration lock, and record the run in the history table.

The child inherits lockgate's environment, standard streams and process group, nothing more:
a URL given as --database-url is not added to its environment, and lockgate's connections are
not inherited (subprocess closes every other descriptor).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from types import FrameType
from typing import Any

from ..shared.errors import CommandFailed, LockgateError, UsageError
from ..shared.phases import EXEC, lane
from .database import Database, unexpected
from .lock import migration_lock
from .outcome import outcome
from .say import Say
from .summary import Summary

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
# What a terminal sends to its whole foreground process group, the child included.
FROM_TERMINAL = (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


def exit_status(returncode: int) -> int:
    """A child killed by signal N exits 128 + N, as in a shell."""
    return 128 - returncode if returncode < 0 else returncode


def should_forward(signum: int, child_told_by_terminal: bool) -> bool:
    """Forward what the child did not get already: a second Ctrl-C would cut its clean-up short."""
    return not (child_told_by_terminal and signum in FROM_TERMINAL)


def run_description(label: str | None, code: int | None, host: str) -> str:
    """The history row's description: what ran, how it ended, where (the command line itself is
    not kept: arguments may hold passwords). `code` None: the row written before the command
    starts, which stays so if lockgate is killed before it can record the end."""
    ended = f"exit {code}" if code is not None else "started, no end recorded"
    return f"{label + ': ' if label else ''}{ended} on {host}"


def exec_command(db: Database, argv: list[str], label: str | None, lock_wait: float, progress: Say) -> Summary:
    summary = Summary("exec", EXEC, label)
    with outcome(summary):
        _run_locked(db, argv, label, lock_wait, progress)
    return summary


def _run_locked(db: Database, argv: list[str], label: str | None, lock_wait: float, progress: Say) -> None:
    tool = os.path.basename(argv[0])
    if shutil.which(argv[0]) is None:
        raise UsageError(f"command not found or not executable: {argv[0]}")
    with migration_lock(db, lane(EXEC), lock_wait, progress):
        db.ensure_history()
        with _SignalForwarding() as signals:  # until the run is recorded: a SIGTERM must not skip that
            code, ms = _run_recorded(db, signals, argv, label, progress)
    where = f"after {ms} ms (recorded in {db.table.schema or 'main'}.{db.table.name})"
    if code != 0:
        raise CommandFailed(f"{tool} exited {code} {where}", code)
    progress(f"lockgate exec: {tool} exited 0 {where}")


def _run_recorded(
    db: Database, signals: _SignalForwarding, argv: list[str], label: str | None, progress: Say
) -> tuple[int, int]:
    """Run the command between its two history writes; its exit status and duration (ms)."""
    tool = os.path.basename(argv[0])
    rank = _record_start(db, tool, label)
    progress(f"lockgate exec: holding the migration lock; running {tool}")
    started = time.monotonic()
    try:
        code = signals.run(argv)
    except LockgateError as exc:  # it never started: a signal came first, or it cannot be run
        _record_end(db, rank, tool, label, exc.exit_code, 0)
        raise
    ms = int((time.monotonic() - started) * 1000)
    _record_end(db, rank, tool, label, code, ms)
    return code, ms


def _record_start(db: Database, tool: str, label: str | None) -> int:
    """The run's row, committed before the command starts, so that a lockgate killed with SIGKILL
    still leaves its trace. Unsuccessful until the end is recorded: an audit row only, it blocks
    nothing and no reader takes it for an applied migration."""
    return db.record(
        version=None,
        phase=EXEC,
        description=run_description(label, None, socket.gethostname()),
        script=tool,
        checksum=None,
        installed_by=db.installed_by(),
        execution_ms=0,
        success=False,
    )


def _record_end(db: Database, rank: int, tool: str, label: str | None, code: int, ms: int) -> None:
    try:
        db.update_row(
            rank, description=run_description(label, code, socket.gethostname()), execution_ms=ms, success=code == 0
        )
    except Exception as exc:
        raise CommandFailed(
            f"{tool} exited {code}, but the end of the run could not be recorded: {unexpected(exc)}", code or 1
        ) from None


class _SignalForwarding:
    """While the child runs, a SIGTERM (Kubernetes stopping the pod) or SIGINT to lockgate goes
    to the child; lockgate waits for it to end, records the run and exits with its code.
    Installed before the child starts, so no signal finds lockgate gone and the child orphaned."""

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.early: int | None = None  # a signal that came before the child started
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalForwarding:
        self.previous = {signum: signal.signal(signum, self._forward) for signum in FORWARDED}
        return self

    def __exit__(self, *_: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def run(self, argv: list[str]) -> int:
        if self.early is not None:
            raise CommandFailed(
                f"stopped by {signal.Signals(self.early).name} before {argv[0]} started", 128 + self.early
            )
        try:
            self.child = subprocess.Popen(argv)
        except OSError as exc:
            raise UsageError(f"cannot run {argv[0]}: {exc.strerror}") from None
        return exit_status(self.child.wait())

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        if self.child is None:
            self.early = signum
        elif should_forward(signum, _in_terminal_foreground()):
            self.child.send_signal(signum)


def _in_terminal_foreground() -> bool:
    """Whether our process group (the child's too) is the foreground of a terminal, which then
    sent the child its own copy of a Ctrl-C."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY)
    except OSError:
        return False  # no controlling terminal: a Job, CI, a pipeline
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)

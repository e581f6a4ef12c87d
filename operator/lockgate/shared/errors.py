"""Errors that end a command, each with the exit code the CLI contract gives it (pure)."""

from __future__ import annotations


class LockgateError(Exception):
    """Base class: the message is shown to the user and must say what to change."""

    exit_code = 1


class MigrationFailed(LockgateError):
    """A migration failed; its transaction rolled back. `error` is the summary's error entry."""

    exit_code = 1

    def __init__(self, message: str, error: object = None) -> None:
        super().__init__(message)
        self.error = error


class CommandFailed(LockgateError):
    """The command `lockgate exec` ran exited non-zero: lockgate exits with the same code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(LockgateError):
    """Bad arguments or configuration (including an unreachable database)."""

    exit_code = 2


class LockNotAcquired(LockgateError):
    """Another runner held the migration lock for longer than --lock-wait."""

    exit_code = 3


class ValidationRefused(LockgateError):
    """The migrations on disk and the history table disagree; nothing was run."""

    exit_code = 4

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class ClusterError(LockgateError):
    """The Kubernetes API refused a request of `lockgate status` or `lockgate wait`."""

    exit_code = 1


class Paused(LockgateError):
    """A batched background script stopped on SIGTERM after a committed batch; a rerun resumes it.
    Not a success: its history row is written only when the walk finishes."""

    exit_code = 5

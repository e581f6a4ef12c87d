"""The outcome of a runner command, as JSON and in a compact form for termination messages (pure)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..shared.errors import LockgateError, MigrationFailed, Paused, ValidationRefused
from ..shared.phases import REPEATABLE, UNDO
from ..shared.report import TERMINATION_MESSAGE_LIMIT, ErrorReport, Report, cut, encode, error_text, excerpt
from .scripts import KIND_PHASE, Kind, Script

CAUSE_CHARS = 200  # each failed target's cause in a chunk's report: a dozen fit in 4 KiB


@dataclass(frozen=True)
class MigrationError:
    version: str | None
    script: str | None
    sqlstate: str | None
    message: str
    line: int | None


@dataclass
class Summary:
    command: str
    phase: str | None = None
    target: str | None = None
    applied: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    error: MigrationError | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    schema_version: str | None = None
    exit_code: int = 0
    message: str | None = None
    duration_ms: int = 0
    failed_targets: list[tuple[str, str]] = field(default_factory=list)  # a pod of several targets
    failed_count: int | None = None
    durations: list[int] = field(default_factory=list)  # a pod of several targets: each reported one's ms, in order
    target_count: int | None = None  # a pod of several targets (a schemaQuery's: any number, none too)

    def fail(self, exc: LockgateError) -> None:
        """Record why the command ended early; what was applied before stays in `applied`."""
        self.exit_code = exc.exit_code
        self.message = str(exc)
        if isinstance(exc, ValidationRefused):
            self.problems = exc.problems
        if isinstance(exc, MigrationFailed) and isinstance(exc.error, MigrationError):
            self.error = exc.error

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def compact(self, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
        """The report for a termination message, in under `limit` bytes: long texts cut."""
        return encode(self._report(), limit)

    def cause(self) -> str:
        """Why it failed, in one line, as the operator reads it from the report."""
        return excerpt(error_text(dict(self._report())))

    def _report(self) -> Report:
        report: Report = {
            "command": self.command,
            "phase": self.phase,
            "target": self.target,
            "schema_version": self.schema_version,
            "exit_code": self.exit_code,
            "message": cut(self.message, 500) if self.message else None,
            "duration_ms": self.duration_ms,
            "applied_count": len(self.applied),
            "pending_count": len(self.pending),
            "applied": [(a["version"] or a["script"], a["ms"]) for a in self.applied],
            "error": _error_report(self.error),
            "problems": [cut(p, 300) for p in self.problems[:5]],
        }
        if self.failed_count is not None:
            report["failed_targets"] = [(t, cut(c, CAUSE_CHARS)) for t, c in self.failed_targets]
            report["failed_count"] = self.failed_count
            report["reported"] = len(self.durations)
            report["durations"] = self.durations
        if self.target_count is not None:
            report["target_count"] = self.target_count
        return report


def chunk_summary(results: list[tuple[str, Summary]], total: int) -> Summary:
    """One report for a pod that migrated several targets one after another (`total` of them;
    fewer ran when a pause stopped it): the failed targets named with their causes, the exit code
    of a pause first (the pod is not counted as failed, and its rerun finds the done targets done),
    else of the first failure."""
    first = results[0][1]
    failed = [(target, s) for target, s in results if s.exit_code]
    combined = Summary(first.command, first.phase, first.target, failed_count=len(failed), target_count=total)
    combined.applied = [a for _, s in results for a in s.applied]
    combined.pending = [p for _, s in results for p in s.pending]
    combined.duration_ms = sum(s.duration_ms for _, s in results)
    combined.durations = [s.duration_ms for _, s in results]
    versions = {s.schema_version for _, s in results}
    combined.schema_version = versions.pop() if len(versions) == 1 else None
    combined.failed_targets = [(target, s.cause()) for target, s in failed]
    codes = [s.exit_code for _, s in failed]
    combined.exit_code = Paused.exit_code if Paused.exit_code in codes else codes[0] if codes else 0
    if failed:
        named = "; ".join(f"{target}: {cause}" for target, cause in combined.failed_targets)
        combined.message = f"{len(failed)} of {total} targets of this pod failed: {named}"
    return combined


def pending_entry(script: Script) -> dict[str, Any]:
    return {
        "version": str(script.version) if script.version else None,
        "phase": phase_of(script),
        "description": script.description,
        "script": script.name,
    }


def applied_entry(script: Script, ms: int) -> dict[str, Any]:
    return pending_entry(script) | {"ms": ms}


def phase_of(script: Script) -> str:
    """The history's phase for a script."""
    if script.kind is Kind.REPEATABLE:
        return REPEATABLE
    if script.kind is Kind.UNDO:
        return UNDO
    return KIND_PHASE[script.kind].value


def _error_report(error: MigrationError | None) -> ErrorReport | None:
    if error is None:
        return None
    return ErrorReport(
        version=error.version,
        script=error.script,
        sqlstate=error.sqlstate,
        message=cut(error.message, 1000),
        line=error.line,
    )

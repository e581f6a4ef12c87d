"""Carrying out a plan's pending scripts: every one parsed before any runs, then one transaction
per migration with its history row, lock_timeout retries, batched walks, concurrent index builds.

execute.Runner loads this module only when something is pending: it brings the SQL parser
(pglast), and a no-op `lockgate migrate`, most runs of it, needs neither (benchmarks/startup.py).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..shared.errors import LockgateError, MigrationFailed, ValidationRefused
from .batched import header, walk
from .database import Database, StatementFailed
from .heartbeat import Heartbeat
from .history import history_values
from .invalid_indexes import IndexBuild
from .lock import LOCK_NOT_AVAILABLE
from .options import Options
from .say import Say
from .scripts import Script
from .statements import ScriptRefused, ScriptSyntaxError, Statement, line_of
from .summary import MigrationError, Summary, applied_entry, phase_of


@dataclass(frozen=True)
class Segment:
    """Statements that run together: in one transaction, or one by one in autocommit."""

    transactional: bool
    statements: list[Statement]


def segments(statements: list[Statement]) -> list[Segment]:
    """Group consecutive transactional statements; each autocommit statement stands alone."""
    groups: list[Segment] = []
    for statement in statements:
        if statement.transactional and groups and groups[-1].transactional:
            groups[-1].statements.append(statement)
        else:
            groups.append(Segment(statement.transactional, [statement]))
    return groups or [Segment(True, [])]


class Applier:
    """Runs pending scripts on the runner's connection, under the lock the Runner holds."""

    def __init__(self, db: Database, options: Options, progress: Say) -> None:
        self.db = db
        self.options = options
        self.progress = progress

    def run(self, pending: list[Script], summary: Summary) -> None:
        """Apply `pending` in order; what is applied goes into `summary.applied` as it commits."""
        prepared = self.prepare(pending)
        self.db.set_timeouts(self.options.lock_timeout_ms, self.options.statement_timeout)
        self._apply_all(prepared, summary)

    def prepare(self, pending: list[Script]) -> list[tuple[Script, list[Statement]]]:
        """Parse every pending script before running any, so a typo in the last applies nothing."""
        prepared, problems = [], []
        for script in pending:
            try:
                prepared.append((script, self._split(script)))
            except ScriptSyntaxError as exc:
                raise MigrationFailed(
                    f"{script.name} line {exc.line}: {exc.message}", _syntax_error(script, exc)
                ) from None
            except ScriptRefused as exc:
                problems.append(f"{script.name} {exc}")
            except header.BatchScriptError as exc:
                problems.append(str(exc))
        if self.options.single_transaction:
            problems += [
                f"{script.name} line {s.line}: cannot run inside --single-transaction (the statement refuses a transaction block)"
                for script, statements in prepared
                for s in statements
                if not s.transactional
            ]
            problems += [
                f"{s.name}: a batched script commits batch by batch: it cannot run inside --single-transaction"
                for s, _ in prepared
                if header.is_batched(s)
            ]
        if problems:
            raise ValidationRefused(problems)
        return prepared

    def statement_counts(self, script: Script) -> dict[str, object]:
        try:
            statements = self._split(script)
        except (ScriptSyntaxError, ScriptRefused, header.BatchScriptError) as exc:
            return {"statements": None, "parse_error": str(exc)}
        return {
            "statements": len(statements),
            "outside_transaction": [s.line for s in statements if not s.transactional],
        }

    def _split(self, script: Script) -> list[Statement]:
        if not header.is_batched(script):
            return self.db.split(script.sql)
        if not self.db.is_postgres:
            raise header.BatchScriptError(f"{script.name}: batched scripts need PostgreSQL")
        return [header.parse(script).statement]

    def _apply_all(self, prepared: list[tuple[Script, list[Statement]]], summary: Summary) -> None:
        installed_by = self.db.installed_by()
        with Heartbeat(self.progress) as heartbeat:
            if self.options.single_transaction:
                together = functools.partial(self._apply_together, prepared, installed_by, summary, heartbeat)
                self._retrying_lock_timeouts("all pending migrations", together)
            else:
                for script, statements in prepared:
                    with heartbeat.track(_label(script)):
                        summary.applied.append(self._apply_one(script, statements, installed_by))
        self.progress(f"applied {len(summary.applied)} migration(s)")

    def _apply_one(self, script: Script, statements: list[Statement], installed_by: str) -> dict[str, object]:
        started = time.monotonic()
        self.db.fresh_session(self.options.lock_timeout_ms, self.options.statement_timeout)
        if header.is_batched(script):
            return self._apply_batched(script, installed_by)
        groups = segments(statements)
        for index, group in enumerate(groups):
            record = index == len(groups) - 1 and group.transactional
            attempt = functools.partial(self._run_segment, script, group, record, started, installed_by)
            try:
                self._retrying_lock_timeouts(script.name, attempt)
            except StatementFailed as failure:
                if index > 0:  # earlier segments committed: the failure must be on record
                    self.db.record(**self._script_row(script, _ms_since(started), installed_by, success=False))
                raise self._failure(script, failure, partial=index > 0) from None
        if not groups[-1].transactional:
            self.db.record(**self._script_row(script, _ms_since(started), installed_by, success=True))
        ms = _ms_since(started)
        self.progress(f"{_label(script)} {ms:>7} ms")
        return applied_entry(script, ms)

    def _apply_batched(self, script: Script, installed_by: str) -> dict[str, object]:
        def record(ms: int) -> None:
            self.db.record(**self._script_row(script, ms, installed_by, success=True))

        hooks = walk.Hooks(
            self._retrying_lock_timeouts,
            StatementFailed,
            record,
            self.progress,
            self.options.progress_file,
            self.options.limits,
        )
        try:
            ms = walk.run(self.db, script, header.parse(script), hooks)
        except StatementFailed as failure:
            error = self._failure(script, failure, partial=False)
            detail = error.error if isinstance(error, MigrationFailed) else None
            raise MigrationFailed(f"{error}; earlier batches stay committed: rerun to resume", detail) from None
        except header.BatchScriptError as exc:
            raise ValidationRefused([str(exc)]) from None
        return applied_entry(script, ms)

    def _run_segment(self, script: Script, group: Segment, record: bool, started: float, installed_by: str) -> None:
        if not group.transactional:
            self._run_outside_transaction(group.statements[0])
            return
        self.db.begin()
        try:
            self.db.run(group.statements)
            if record:
                self.db.record(**self._script_row(script, _ms_since(started), installed_by, success=True))
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise

    def _apply_together(
        self, prepared: list[tuple[Script, list[Statement]]], installed_by: str, summary: Summary, heartbeat: Heartbeat
    ) -> None:
        applied = []
        self.db.begin()
        try:
            for script, statements in prepared:
                started = time.monotonic()
                self.db.fresh_session(self.options.lock_timeout_ms, self.options.statement_timeout)
                try:
                    with heartbeat.track(_label(script)):
                        self.db.run(statements)
                except StatementFailed as failure:
                    raise self._failure(script, failure, partial=False, together=True) from None
                ms = _ms_since(started)
                self.db.record(**self._script_row(script, ms, installed_by, success=True))
                applied.append(applied_entry(script, ms))
                self.progress(f"{_label(script)} {ms:>7} ms")
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise
        summary.applied = applied

    def _run_outside_transaction(self, statement: Statement) -> None:
        """Run e.g. CREATE INDEX CONCURRENTLY; drop any INVALID index a failed build leaves."""
        build = IndexBuild.start(self.db, statement, self.progress)
        try:
            self.db.run([statement])
        except StatementFailed:
            build.failed()
            raise

    def _retrying_lock_timeouts(self, what: str, attempt: Callable[[], None]) -> None:
        """Retry on lock_timeout with backoff, so waiting DDL gives way to traffic instead of queueing it."""
        for retry in range(self.options.lock_retries + 1):
            try:
                attempt()
                return
            except StatementFailed as failure:
                if self.db.error_of(failure.cause).sqlstate != LOCK_NOT_AVAILABLE or retry == self.options.lock_retries:
                    raise
                delay = min(0.5 * 2**retry, 15.0)
                self.progress(
                    f"  {what}: lock not granted within {self.options.lock_timeout_ms} ms "
                    f"(attempt {retry + 1}/{self.options.lock_retries + 1}); retrying in {delay:g}s"
                )
                time.sleep(delay)

    def _failure(
        self, script: Script, failure: StatementFailed, partial: bool, together: bool = False
    ) -> LockgateError:
        error = self.db.error_of(failure.cause)
        position = (error.position or 1) - 1
        line = line_of(script.sql, failure.statement.offset + position) if error.position else failure.statement.line
        detail = MigrationError(
            str(script.version) if script.version else None, script.name, error.sqlstate, error.message, line
        )
        if error.sqlstate == LOCK_NOT_AVAILABLE:
            error_text = f"{error.message} after {self.options.lock_retries + 1} attempts; another transaction holds the lock: retry later or raise --lock-timeout"
        else:
            error_text = error.message
        tail = (
            "; earlier statements ran outside a transaction and stay applied (recorded as failed)"
            if partial
            else "; all pending migrations were rolled back"
            if together
            else "; its transaction was rolled back"
        )
        return MigrationFailed(f"{script.name} line {line}: [{error.sqlstate}] {error_text}{tail}", detail)

    def _script_row(self, script: Script, ms: int, installed_by: str, success: bool) -> dict[str, object]:
        return history_values(
            phase_of(script),
            script.version,
            script.description,
            script.name,
            script.checksum,
            ms,
            success,
            installed_by,
        )


def _label(script: Script) -> str:
    return f"  {script.label:<12} {script.description:<40}"


def _syntax_error(script: Script, exc: ScriptSyntaxError) -> MigrationError:
    return MigrationError(str(script.version) if script.version else None, script.name, "42601", exc.message, exc.line)


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)

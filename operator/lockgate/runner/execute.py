"""`lockgate migrate` and its siblings: run a plan against the database, exactly once.

The decisions live in plan.py; this module is the shell that takes the lock, reads the
history, executes statements and records what happened.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from ..shared.errors import LockgateError, MigrationFailed, ValidationRefused
from ..shared.phases import BASELINE, REPAIR, UNDO, lane
from ..shared.versions import Version
from .batched import header, walk
from .database import Database, StatementFailed
from .heartbeat import Heartbeat
from .history import SchemaState, derive_state
from .invalid_indexes import IndexBuild
from .inventory import Inventory, inventory
from .lock import LOCK_NOT_AVAILABLE, migration_lock
from .options import Options
from .outcome import outcome
from .plan import Plan, plan_baseline, plan_migrate, plan_undo
from .say import Say
from .scripts import Script
from .statements import ScriptRefused, ScriptSyntaxError, Statement, line_of
from .summary import MigrationError, Summary, applied_entry, pending_entry, phase_of


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


class Runner:
    def __init__(self, db: Database, scripts: list[Script], options: Options, progress: Say) -> None:
        self.db = db
        self.scripts = scripts
        self.options = options
        self.progress = progress
        db.on_notice(lambda notice: progress(f"  {notice}"))

    # commands: each returns its Summary, failed or not, so nothing done before a failure is lost

    def migrate(self) -> Summary:
        summary = self._summary("migrate")
        with outcome(summary), self._lock(self.options.phase):
            self.db.ensure_history()
            plan = self._plan(derive_state(self.db.read_history()))
            summary.pending = [pending_entry(s) for s in plan.pending]
            summary.notes = plan.notes
            if plan.problems:
                raise ValidationRefused(plan.problems)
            self._run(plan.pending, summary)
        return summary

    def plan(self) -> Summary:
        summary = self._summary("plan")
        with outcome(summary):
            state = derive_state(self.db.read_history())  # read once: thousands of rows take a while
            plan = self._plan(state)
            summary.pending = [pending_entry(s) | self._statement_counts(s) for s in plan.pending]
            summary.notes = plan.notes
            summary.schema_version = self._schema_version(state)
            if plan.problems:
                raise ValidationRefused(plan.problems)
        return summary

    def undo(self, to: Version) -> Summary:
        summary = self._summary("undo")
        summary.target = str(to)
        with outcome(summary), self._lock(UNDO):
            self.db.ensure_history()
            plan = plan_undo(self.scripts, derive_state(self.db.read_history()), to)
            summary.pending = [pending_entry(s) for s in plan.pending]
            if plan.problems:
                raise ValidationRefused(plan.problems)
            self._run(plan.pending, summary)
        return summary

    def baseline(self, version: Version) -> Summary:
        summary = self._summary("baseline")
        summary.target = str(version)
        with outcome(summary), self._lock(BASELINE):
            self.db.ensure_history()
            problems = plan_baseline(derive_state(self.db.read_history()), version)
            if problems:
                raise ValidationRefused(problems)
            self.db.record(**self._row(BASELINE, version, "<< baseline >>", "<< baseline >>", None, 0, True))
            summary.schema_version = str(version)
            self.progress(f"baselined at {version}: versions up to {version} count as applied")
        return summary

    def repair(self) -> Summary:
        summary = self._summary("repair")
        with outcome(summary), self._lock(REPAIR):
            removed = self.db.delete_failed() if self.db.history_exists() else 0
            summary.notes = [f"removed {removed} failed history row(s)"]
            self.progress(summary.notes[0])
        return summary

    def info(self) -> Inventory:
        """Every script and recorded run with its state, and how far each batched walk has come."""
        return inventory(self.scripts, derive_state(self.db.read_history()), walk.read_progress(self.db))

    def _lock(self, command: str) -> AbstractContextManager[None]:
        return migration_lock(self.db, lane(command), self.options.lock_wait, self.progress)

    def _run(self, pending: list[Script], summary: Summary) -> None:
        try:
            prepared = self._prepare(pending)
            self.db.set_timeouts(self.options.lock_timeout_ms, self.options.statement_timeout)
            self._apply_all(prepared, summary)
        finally:
            applied = {a["script"] for a in summary.applied}
            summary.pending = [p for p in summary.pending if p["script"] not in applied]
            summary.schema_version = self._schema_version()

    # planning

    def _summary(self, command: str) -> Summary:
        return Summary(command, self.options.phase.value, str(self.options.target) if self.options.target else None)

    def _plan(self, state: SchemaState) -> Plan:
        return plan_migrate(self.scripts, state, self.options.phase, self.options.target, self.options.out_of_order)

    def _schema_version(self, state: SchemaState | None = None) -> str | None:
        highest = (derive_state(self.db.read_history()) if state is None else state).highest(self.options.phase)
        return str(highest) if highest else None

    def _prepare(self, pending: list[Script]) -> list[tuple[Script, list[Statement]]]:
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

    def _statement_counts(self, script: Script) -> dict[str, object]:
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

    # execution

    def _apply_all(self, prepared: list[tuple[Script, list[Statement]]], summary: Summary) -> None:
        if not prepared:
            self.progress(f"nothing to do: {self.options.phase.value} is up to date")
            return
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
        return self._row(
            phase_of(script),
            script.version,
            script.description,
            script.name,
            script.checksum,
            ms,
            success,
            installed_by,
        )

    def _row(
        self,
        phase: str,
        version: Version | None,
        description: str,
        script: str,
        checksum: str | None,
        ms: int,
        success: bool,
        installed_by: str | None = None,
    ) -> dict[str, object]:
        return {
            "version": str(version) if version else None,
            "phase": phase,
            "description": description,
            "script": script,
            "checksum": checksum,
            "installed_by": installed_by or self.db.installed_by(),
            "execution_ms": ms,
            "success": success,
        }


def _label(script: Script) -> str:
    return f"  {script.label:<12} {script.description:<40}"


def _syntax_error(script: Script, exc: ScriptSyntaxError) -> MigrationError:
    return MigrationError(str(script.version) if script.version else None, script.name, "42601", exc.message, exc.line)


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)

"""`lockgate migrate` and its siblings: run a plan against the database, exactly once.

The decisions live in plan.py; this module is the shell that takes the lock, reads the
history and plans; apply.py executes the pending scripts and records what happened. It is
imported only when something is pending: it loads the SQL parser, which a no-op run never needs.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from ..shared.errors import ValidationRefused
from ..shared.phases import BASELINE, REPAIR, UNDO, lane
from ..shared.versions import Version
from .database import Database
from .history import SchemaState, derive_state, history_values
from .lock import migration_lock
from .options import Options
from .outcome import outcome
from .plan import Plan, plan_baseline, plan_migrate, plan_undo
from .say import Say
from .scripts import Script
from .summary import Summary, pending_entry

if TYPE_CHECKING:
    from .apply import Applier
    from .inventory import Inventory


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
            summary.pending = [pending_entry(s) | self._applier().statement_counts(s) for s in plan.pending]
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
            row = history_values(
                BASELINE, version, "<< baseline >>", "<< baseline >>", None, 0, True, self.db.installed_by()
            )
            self.db.record(**row)
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
        # With the SQL parser (batched walks' headers): not for the commands that run at start-up.
        from .batched import walk
        from .inventory import inventory

        return inventory(self.scripts, derive_state(self.db.read_history()), walk.read_progress(self.db))

    def _lock(self, command: str) -> AbstractContextManager[None]:
        return migration_lock(self.db, lane(command), self.options.lock_wait, self.progress)

    def _run(self, pending: list[Script], summary: Summary) -> None:
        try:
            if pending:
                self._applier().run(pending, summary)
            else:
                self.progress(f"nothing to do: {self.options.phase.value} is up to date")
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

    def _applier(self) -> Applier:
        from .apply import Applier  # the SQL parser loads with it: only when something is pending

        return Applier(self.db, self.options, self.progress)

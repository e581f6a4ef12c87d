"""The history table's rows, and what they say about the database (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..shared.phases import BASELINE, EXEC, REPEATABLE, UNDO, Phase
from ..shared.versions import Version


@dataclass(frozen=True)
class HistoryRow:
    rank: int
    version: Version | None
    phase: str
    description: str
    script: str
    checksum: str | None
    installed_by: str
    installed_on: datetime | None
    execution_ms: int
    success: bool


@dataclass
class SchemaState:
    """The database's schema as the history records it, after undos and baselines."""

    applied: dict[tuple[Phase, Version], HistoryRow] = field(default_factory=dict)
    baseline: Version | None = None
    repeatable: dict[str, str] = field(default_factory=dict)  # description -> checksum last applied
    failed: dict[tuple[str, Version | None], HistoryRow] = field(default_factory=dict)
    exec_runs: list[HistoryRow] = field(default_factory=list)  # other tools' runs: audit, not schema

    def is_applied(self, phase: Phase, version: Version) -> bool:
        return (phase, version) in self.applied or (self.baseline is not None and version <= self.baseline)

    def highest(self, phase: Phase) -> Version | None:
        versions = [v for (p, v) in self.applied if p is phase]
        if self.baseline is not None:
            versions.append(self.baseline)
        return max(versions, default=None)


def derive_state(rows: list[HistoryRow]) -> SchemaState:
    """Replay the history in order: later rows (undo, a retried success) override earlier ones."""
    state = SchemaState()
    for row in sorted(rows, key=lambda r: r.rank):
        if row.phase == EXEC:  # what another tool did is its own business: a failed run blocks nothing
            state.exec_runs.append(row)
            continue
        key = (row.phase, row.version)
        if not row.success:
            state.failed[key] = row
            continue
        state.failed.pop(key, None)
        if row.phase == BASELINE and row.version is not None:
            state.baseline = row.version
        elif row.phase == REPEATABLE:
            state.repeatable[row.description] = row.checksum or ""
        elif row.phase == UNDO and row.version is not None:
            state.applied.pop((Phase.EXPAND, row.version), None)
            state.applied.pop((Phase.BACKGROUND, row.version), None)
        elif row.version is not None and row.phase in Phase._value2member_map_:
            state.applied[(Phase(row.phase), row.version)] = row
    return state


def history_values(
    phase: str,
    version: Version | None,
    description: str,
    script: str,
    checksum: str | None,
    ms: int,
    success: bool,
    installed_by: str,
) -> dict[str, object]:
    """A row to write (Database.record): what a run did, by whom, in how long."""
    return {
        "version": str(version) if version else None,
        "phase": phase,
        "description": description,
        "script": script,
        "checksum": checksum,
        "installed_by": installed_by,
        "execution_ms": ms,
        "success": success,
    }

"""What `lockgate info` lists: every script and recorded run with its state, and how far each
batched walk has come (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..shared.phases import Phase
from ..shared.versions import Version
from .batched.header import describe_view
from .history import HistoryRow, SchemaState
from .scripts import PHASE_KIND, Kind, Script


@dataclass(frozen=True)
class Entry:
    """One script or recorded run."""

    version: str | None
    script: str
    description: str
    state: str
    installed_on: str | None = None
    installed_by: str | None = None
    ms: int | None = None
    progress: dict[str, Any] | None = None  # a batched walk's view (batched/header.view)

    @property
    def walk(self) -> str | None:
        """The batched walk in words, for the text listing."""
        return describe_view(self.progress) if self.progress else None

    def document(self) -> dict[str, Any]:
        """As `info --json` prints it: `progress` only where a walk was recorded."""
        fields = asdict(self)
        if self.progress is None:
            del fields["progress"]
        return fields


@dataclass(frozen=True)
class Inventory:
    phases: dict[Phase, list[Entry]]  # every local script and recorded version, oldest first
    repeatable: list[Entry]
    exec_runs: list[Entry]  # the runs of `lockgate exec`, kept for the audit

    def sections(self) -> dict[str, list[Entry]]:
        """Named as `info` shows them, in order: expand, background, contract, repeatable, exec."""
        return {phase.value: entries for phase, entries in self.phases.items()} | {
            "repeatable": self.repeatable,
            "exec": self.exec_runs,
        }

    def document(self) -> dict[str, list[dict[str, Any]]]:
        return {name: [e.document() for e in entries] for name, entries in self.sections().items()}


def inventory(
    scripts: list[Script], state: SchemaState, walks: Mapping[str, dict[str, Any]] | None = None
) -> Inventory:
    """`walks`: script name -> the view of its batched walk, as the progress table records it."""
    walks = walks or {}
    phases = {phase: _phase_entries(phase, scripts, state) for phase in Phase}
    # Only background scripts are walked in batches (batched/header.is_batched).
    phases[Phase.BACKGROUND] = [replace(e, progress=walks.get(e.script)) for e in phases[Phase.BACKGROUND]]
    repeatable = [
        Entry(
            None, s.name, s.description, "applied" if state.repeatable.get(s.description) == s.checksum else "pending"
        )
        for s in sorted((s for s in scripts if s.kind is Kind.REPEATABLE), key=lambda s: s.description)
    ]
    exec_runs = [  # the description holds label, exit code and host of the run
        Entry(None, row.script, row.description, row.description, *_installed(row)) for row in state.exec_runs
    ]
    return Inventory(phases, repeatable, exec_runs)


def _phase_entries(phase: Phase, scripts: list[Script], state: SchemaState) -> list[Entry]:
    local = {s.number: s for s in scripts if s.kind is PHASE_KIND[phase]}
    recorded = {v: row for (p, v), row in state.applied.items() if p is phase}
    entries = []
    for version in sorted(set(local) | set(recorded)):
        script, row = local.get(version), recorded.get(version)
        name, description = (
            (script.name, script.description) if script else (recorded[version].script, recorded[version].description)
        )
        state_of = _state_of(phase, version, script, row, state)
        entries.append(Entry(str(version), name, description, state_of, *(_installed(row) if row else ())))
    return entries


def _installed(row: HistoryRow) -> tuple[str, str, int]:
    return _timestamp(row.installed_on), row.installed_by, row.execution_ms


def _timestamp(value: object) -> str:
    return value.isoformat(sep=" ", timespec="seconds") if hasattr(value, "isoformat") else str(value)


def _state_of(phase: Phase, version: Version, script: Script | None, row: HistoryRow | None, state: SchemaState) -> str:
    if row is None:
        return "baseline" if state.is_applied(phase, version) else "pending"
    if script is None:
        return "applied (no local script)"
    return "applied" if row.checksum in (None, script.checksum) else "applied (edited since)"

"""What a command would do, decided from the scripts on disk and the history (pure).

Every refusal is a sentence that names the script and says what to change.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from ..shared.phases import Phase
from ..shared.versions import Version
from .history import SchemaState
from .scripts import KIND_PHASE, PHASE_KIND, Kind, Script


@dataclass(frozen=True)
class Plan:
    pending: list[Script]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan_migrate(
    scripts: list[Script],
    state: SchemaState,
    phase: Phase,
    target: Version | None = None,
    out_of_order: bool = False,
) -> Plan:
    """The scripts `lockgate migrate --phase PHASE --target TARGET` would run, in order."""
    kind = PHASE_KIND[phase]
    problems = _edited(scripts, state) + _missing(scripts, state) + _failed(state) + _no_target(scripts, state, target)
    within = [s for s in _of_kind(scripts, kind) if target is None or s.number <= target]
    pending = [s for s in within if not state.is_applied(phase, s.number)]
    problems += _out_of_order(pending, state, phase, out_of_order)
    problems += _prerequisites(pending, scripts, state, phase)
    if phase is Phase.EXPAND:
        pending += [s for s in _repeatables(scripts) if state.repeatable.get(s.description) != s.checksum]
    return Plan(pending, problems, _notes(scripts, state, phase, target))


def plan_undo(scripts: list[Script], state: SchemaState, to: Version) -> Plan:
    """The undo scripts that take the schema back to `to`, newest first."""
    undo = {s.number: s for s in _of_kind(scripts, Kind.UNDO)}
    newer = sorted((v for (p, v) in state.applied if p is Phase.EXPAND and v > to), reverse=True)
    problems = _edited(scripts, state) + _failed(state)
    for version in newer:
        if state.is_applied(Phase.CONTRACT, version):
            problems.append(f"C{version} was applied: undo cannot bring back what the contract phase removed")
        elif version not in undo:
            problems.append(
                f"V{version} has no U{version}__<description>.sql undo script; add one or undo to {version}"
            )
    if state.baseline is not None and to < state.baseline:
        problems.append(f"cannot undo below the baseline {state.baseline}")
    return Plan([undo[v] for v in newer if v in undo], problems)


def plan_baseline(state: SchemaState, version: Version) -> list[str]:
    """Baselining is for a database whose schema predates lockgate: refuse on a migrated one."""
    if state.applied or state.baseline is not None:
        return [
            f"the history already records migrations (up to {_highest_any(state)}); baseline only an unmigrated database"
        ]
    return []


def _of_kind(scripts: list[Script], kind: Kind) -> list[Script]:
    return sorted((s for s in scripts if s.kind is kind), key=lambda s: s.number)


def _repeatables(scripts: list[Script]) -> list[Script]:
    return sorted((s for s in scripts if s.kind is Kind.REPEATABLE), key=lambda s: s.description)


def _edited(scripts: list[Script], state: SchemaState) -> list[str]:
    by_key = {(KIND_PHASE[s.kind], s.version): s for s in scripts if s.kind in KIND_PHASE}
    return [
        f"{script.name} was edited after it was applied on {_date(row.installed_on)}: restore the "
        "applied content and put the change in a new migration"
        for key, row in state.applied.items()
        if (script := by_key.get(key)) and row.checksum and row.checksum != script.checksum
    ]


def _missing(scripts: list[Script], state: SchemaState) -> list[str]:
    """Applied versions with no script, below the newest local one (newer ones are 'future', fine)."""
    problems = []
    for phase in Phase:
        local = {s.number for s in _of_kind(scripts, PHASE_KIND[phase])}
        newest = max(local, default=None)
        for (p, version), row in sorted(state.applied.items(), key=lambda item: item[0][1]):
            if p is phase and version not in local and newest is not None and version < newest:
                problems.append(
                    f"{row.script} ({phase.value} {version}) is recorded as applied but is missing from the "
                    "migrations directory: restore the file"
                )
    return problems


def _no_target(scripts: list[Script], state: SchemaState, target: Version | None) -> list[str]:
    """A target no script and no history row has is a mistake (a wrong version, scripts not
    shipped): succeeding with nothing applied would call a schema ready that is not there."""
    if target is None or any(s.version == target for s in scripts):
        return []
    if state.baseline == target or any(v == target for (_, v) in state.applied):
        return []
    found = ", ".join(sorted(s.name for s in scripts)[:10]) or "no migration files (V<version>__<description>.sql)"
    more = f" and {len(scripts) - 10} more" if len(scripts) > 10 else ""
    return [
        f"no migration for version {target} in the migrations directory: found {found}{more}; "
        f"add V{target}__<description>.sql or set the target to a version that has one"
    ]


def _failed(state: SchemaState) -> list[str]:
    return [
        f"{row.script} failed part-way on {_date(row.installed_on)} after statements outside a transaction "
        "had committed: finish or revert its changes by hand, then run `lockgate repair`"
        for row in state.failed.values()
    ]


def _out_of_order(pending: list[Script], state: SchemaState, phase: Phase, allowed: bool) -> list[str]:
    highest = state.highest(phase)
    if allowed or highest is None:
        return []
    return [
        f"{s.name} is older than the applied {PHASE_KIND[phase].value}{highest}: give it a version above {highest}, "
        "or pass --out-of-order to apply it anyway"
        for s in pending
        if s.number < highest
    ]


def _prerequisites(pending: list[Script], scripts: list[Script], state: SchemaState, phase: Phase) -> list[str]:
    """Background needs its expand; contract needs its expand and background."""
    unapplied = {  # sorted once, so thousands of pending scripts cost no more than a bisection each
        earlier: [s for s in _of_kind(scripts, PHASE_KIND[earlier]) if not state.is_applied(earlier, s.number)]
        for earlier in phase.prerequisites
    }
    problems = []
    for script in pending:
        for earlier, waiting in unapplied.items():
            missing = [s.name for s in waiting[: bisect.bisect_right(waiting, script.number, key=lambda s: s.number)]]
            if missing:
                problems.append(
                    f"{script.name} cannot run before {', '.join(missing)} ({earlier.value}) is applied: "
                    f"run `lockgate migrate --phase {earlier.value}` first"
                )
    return problems


def _notes(scripts: list[Script], state: SchemaState, phase: Phase, target: Version | None) -> list[str]:
    local = {s.number for s in _of_kind(scripts, PHASE_KIND[phase])}
    highest = state.highest(phase)
    notes = []
    future = sorted(
        v for (p, v) in state.applied if p is phase and v not in local and v > max(local, default=Version((0,)))
    )
    if future:
        notes.append(
            f"the database has newer {phase.value} versions than this directory: {', '.join(map(str, future))}"
        )
    if target is not None and highest is not None and highest > target:
        notes.append(f"{phase.value} is already at {highest}, newer than the target {target}; nothing is undone")
    return notes


def _highest_any(state: SchemaState) -> Version | None:
    return max([v for (_, v) in state.applied] + ([state.baseline] if state.baseline else []), default=None)


def _date(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if hasattr(value, "strftime") else "an earlier run"

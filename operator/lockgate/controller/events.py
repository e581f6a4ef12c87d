"""The Events a decision posts on the SchemaMigration: one for each step a person cares about (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .conditions import ConditionType, Reason, StatusPhase, became_true, find
from .history_entry import HistoryEntry, Result
from .ledger import JobRequest

# Phases worth an Event when entered, and the condition whose message explains them.
ANNOUNCED = {
    StatusPhase.NEWER_SCHEMA_KEPT: ConditionType.READY,
    StatusPhase.PAUSED: ConditionType.RECONCILING,
    StatusPhase.AWAITING_APPROVAL: ConditionType.CONTRACTED,
    StatusPhase.AWAITING_CANARY_APPROVAL: ConditionType.RECONCILING,
    StatusPhase.CONTRACT_PENDING: ConditionType.CONTRACTED,
}

# Stalled reasons worth a Warning Event of their own (a failed Job has its <Phase>Failed Event).
WARNED = (Reason.OPERATOR_ERROR, Reason.INVALID_SPEC)


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


def events_for(
    old_status: dict[str, Any], status: dict[str, Any], claim: JobRequest | None, finished: list[HistoryEntry]
) -> tuple[Event, ...]:
    events = [_finished_event(e) for e in finished]
    if claim and (old_status.get("jobs") or {}).get(claim.phase) != claim.name:
        events.append(
            Event("Normal", "JobCreated", f"created {claim.phase} Job {claim.name} for version {claim.version}")
        )
    old, new = old_status.get("conditions") or [], status["conditions"]
    stalled = find(new, ConditionType.STALLED) or {}
    if became_true(old, new, ConditionType.STALLED) and stalled["reason"] in WARNED:
        events.append(Event("Warning", stalled["reason"], stalled["message"]))
    if became_true(old, new, ConditionType.ROLLED_OUT):
        events.append(Event("Normal", "RolledOut", (find(new, ConditionType.ROLLED_OUT) or {})["message"]))
    phase = status["phase"]
    if phase != old_status.get("phase") and phase in ANNOUNCED:
        events.append(Event("Normal", phase, (find(new, ANNOUNCED[StatusPhase(phase)]) or {})["message"]))
    return tuple(events)


def _finished_event(entry: HistoryEntry) -> Event:
    phase = entry.phase
    if entry.result == Result.SUCCEEDED:
        applied = f": {entry.applied} migration(s) applied" if entry.applied is not None else ""
        return Event(
            "Normal",
            f"{phase.capitalize()}Succeeded",
            f"{entry.step} Job {entry.job} for version {entry.version} succeeded{applied}",
        )
    return Event(
        "Warning",
        f"{phase.capitalize()}Failed",
        f"{entry.step} Job {entry.job} for version {entry.version} failed: {entry.error}",
    )

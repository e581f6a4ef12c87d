"""The words of the status: its phases, kstatus-compatible conditions and their reasons (pure)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class StatusPhase(enum.StrEnum):
    """status.phase: where the release of spec.version stands."""

    EXPANDING = "Expanding"
    ROLLING_OUT = "RollingOut"
    BACKFILLING = "Backfilling"
    PAUSED = "Paused"  # background work, by the lockgate.dev/paused annotation
    CONTRACT_PENDING = "ContractPending"
    AWAITING_APPROVAL = "AwaitingApproval"
    AWAITING_CANARY_APPROVAL = "AwaitingCanaryApproval"  # the rest of expand, by lockgate.dev/approve-canary
    CONTRACTING = "Contracting"
    COMPLETE = "Complete"
    ROLLING_BACK = "RollingBack"
    NEWER_SCHEMA_KEPT = "NewerSchemaKept"
    FAILED = "Failed"


class ConditionType(enum.StrEnum):
    READY = "Ready"  # the gate for spec.version is open and nothing failed (never waits for contract)
    RECONCILING = "Reconciling"
    STALLED = "Stalled"  # never True together with Reconciling
    EXPANDED = "Expanded"
    ROLLED_OUT = "RolledOut"
    CONTRACTED = "Contracted"


class Reason(enum.StrEnum):
    """Every reason a condition or a pod's gate can give."""

    # expand
    EXPANDING = "Expanding"
    EXPANDED = "Expanded"
    AWAITING_CANARY_APPROVAL = "AwaitingCanaryApproval"
    SCHEMA_EXPANDED = "SchemaExpanded"
    # rollout
    ROLLOUT_WAITING = "RolloutWaiting"
    ROLLING_OUT = "RollingOut"
    ROLLOUT_COMPLETE = "RolloutComplete"
    # contract
    WAITING_FOR_EXPAND = "WaitingForExpand"
    WAITING_FOR_ROLLOUT = "WaitingForRollout"
    DISABLED = "Disabled"
    DELAYED = "Delayed"
    AWAITING_APPROVAL = "AwaitingApproval"
    CONTRACTING = "Contracting"
    CONTRACTED = "Contracted"
    # lowering spec.version
    NEWER_SCHEMA_KEPT = "NewerSchemaKept"
    ROLLING_BACK = "RollingBack"
    NO_UNDO_IMAGE = "NoUndoImage"
    # failures
    NO_FAILURE = "NoFailure"
    STALLED = "Stalled"
    JOB_FAILED = "JobFailed"
    JOB_CANNOT_START = "JobCannotStart"
    PAUSED = "Paused"
    OPERATOR_ERROR = "OperatorError"
    INVALID_SPEC = "InvalidSpec"
    # a pod's gate
    SCHEMA_READY = "SchemaReady"
    WAITING_FOR_SCHEMA = "WaitingForSchema"
    SCHEMA_MIGRATION_NOT_FOUND = "SchemaMigrationNotFound"
    MISSING_REQUIRED_VERSION = "MissingRequiredVersion"
    INVALID_REQUIRED_VERSION = "InvalidRequiredVersion"


@dataclass(frozen=True)
class Condition:
    """What a condition says, before it is stamped with times and the generation."""

    status: bool
    reason: Reason
    message: str = ""


def condition(
    old: list[dict[str, Any]], kind: ConditionType, value: Condition, now: str, generation: int
) -> dict[str, Any]:
    """The API form of a condition; it keeps its lastTransitionTime unless its status flips."""
    status = "True" if value.status else "False"
    previous = find(old, kind)
    since = previous["lastTransitionTime"] if previous and previous.get("status") == status else now
    return {
        "type": kind.value,
        "status": status,
        "reason": value.reason.value,
        "message": value.message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }


def find(conditions: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == kind), None)


def is_true(conditions: list[dict[str, Any]], kind: str) -> bool:
    found = find(conditions, kind)
    return bool(found and found.get("status") == "True")


def became_true(old: list[dict[str, Any]], new: list[dict[str, Any]], kind: str) -> bool:
    return is_true(new, kind) and not is_true(old, kind)

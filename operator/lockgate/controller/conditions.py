"""kstatus-compatible status conditions (pure)."""

from __future__ import annotations

from typing import Any

ORDER = ("Ready", "Reconciling", "Stalled", "Expanded", "RolledOut", "Contracted")


def condition(
    old: list[dict[str, Any]], kind: str, status: bool, reason: str, message: str, now: str, generation: int
) -> dict[str, Any]:
    """A condition that keeps its lastTransitionTime unless its status flips."""
    value = "True" if status else "False"
    previous = find(old, kind)
    since = previous["lastTransitionTime"] if previous and previous.get("status") == value else now
    return {
        "type": kind,
        "status": value,
        "reason": reason,
        "message": message,
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

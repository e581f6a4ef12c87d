"""The schema gate: which gated pods may pass their readiness gate (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from ..shared.timestamps import parse_time
from ..shared.versions import Version
from .conditions import Condition, Reason
from .observed import Observed, PodView


@dataclass(frozen=True)
class GatePatch:
    pod: str
    ready: bool
    reason: str
    message: str
    waited_seconds: float | None = None


def gate_patches(observed: Observed, expanded: Version | None) -> tuple[GatePatch, ...]:
    """The gate conditions to write: only where they change."""
    patches = []
    for pod in observed.pods:
        if pod.deleting:
            continue
        gate = gate_for(pod, observed, expanded)
        if pod.gate == ("True" if gate.status else "False", gate.reason):
            continue
        if observed.migration is None and pod.gate and pod.gate[0] == "True":
            continue  # never take a serving pod out because its SchemaMigration went away
        created = parse_time(pod.created)
        waited = (observed.now - created).total_seconds() if gate.status and created and pod.gate is not None else None
        patches.append(GatePatch(pod.name, gate.status, gate.reason.value, gate.message, waited))
    return tuple(patches)


def held_pods(observed: Observed, expanded: Version | None) -> tuple[PodView, ...]:
    """The pods the gate holds now (for the metrics: how many, and since when)."""
    return tuple(p for p in observed.pods if not p.deleting and not gate_for(p, observed, expanded).status)


def gate_for(pod: PodView, observed: Observed, expanded: Version | None) -> Condition:
    """Open once the version the pod requires is expanded; closed, with the reason, before."""
    if observed.migration is None:
        return Condition(
            False,
            Reason.SCHEMA_MIGRATION_NOT_FOUND,
            f"no SchemaMigration {observed.name} in namespace {observed.namespace}",
        )
    if pod.unreadable is not None:
        return Condition(
            False,
            Reason.INVALID_REQUIRED_VERSION,
            f"lockgate.dev/requires-version {pod.unreadable!r} is not a dotted version such as 3 or 1.10",
        )
    required = pod.required
    if required is None:
        return Condition(
            False,
            Reason.MISSING_REQUIRED_VERSION,
            "set the pod template annotation lockgate.dev/requires-version to the schema version this code needs",
        )
    if expanded is not None and required <= expanded:
        return Condition(
            True,
            Reason.SCHEMA_READY,
            f"schema {expanded} satisfies the required {required} (SchemaMigration {observed.name})",
        )
    return Condition(
        False,
        Reason.WAITING_FOR_SCHEMA,
        f"waiting for SchemaMigration {observed.name} to expand schema {required} (expanded: {expanded or 'none yet'})",
    )

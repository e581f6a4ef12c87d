"""The SchemaMigration's status, as written by the operator (pure)."""

from __future__ import annotations

from typing import Any

from ..shared.progress import Progress
from ..shared.timestamps import iso
from ..shared.versions import Version
from .background import progress_status
from .conditions import Condition, ConditionType, Reason, StatusPhase, condition
from .gate import gate_for
from .history_entry import HistoryEntry
from .ledger import Ledger
from .observed import Observed
from .phase_plan import PhasePlan
from .spec import Migration
from .targets import targets_status


def status_of(m: Migration, ledger: Ledger, plan: PhasePlan, observed: Observed) -> dict[str, Any]:
    """The whole status: versions, conditions, the bounded history and the gate's view."""
    history = ledger.bounded_history()
    status: dict[str, Any] = without_nulls(
        {
            "observedGeneration": m.generation,
            "phase": plan.phase.value,
            "targetVersion": str(m.spec.version),
            "appliedVersion": _str(ledger.expanded),
            "backgroundVersion": _str(ledger.background),
            "contractedVersion": _str(ledger.contracted),
            "conditions": _conditions(m, ledger, plan, iso(observed.now)),
            "jobs": {e.phase: e.job for e in history},
            "history": [e.to_api() for e in history],
            "gate": _gate(ledger, observed),
            "progress": _progress(m, plan, observed),
            "targets": _targets(m, history, observed),
        }
    )
    return status


def _targets(m: Migration, history: list[HistoryEntry], observed: Observed) -> dict[str, Any] | None:
    if not m.spec.targets:
        return None
    return targets_status(m.spec.targets, history, m.spec.version, observed.jobs, observed.job_pods)


def _progress(m: Migration, plan: PhasePlan, observed: Observed) -> dict[str, Any] | None:
    """The background phase's progress while it runs; the last one seen while it is paused."""
    last: dict[str, Any] | None = m.status.get("progress")
    if last and not any(j.name == last.get("job") for j in observed.jobs):
        last = None  # an earlier version's Job
    if plan.phase == StatusPhase.BACKFILLING:
        return progress_status(observed) or last
    if plan.phase == StatusPhase.PAUSED and last:
        paused = Progress(last["script"], "paused", last["rows"], last["batches"], last.get("percent"), None, None)
        return last | {"state": "paused", "rowsPerSecond": None, "etaSeconds": None, "summary": paused.summary()}
    return None


def _conditions(m: Migration, ledger: Ledger, plan: PhasePlan, now: str) -> list[dict[str, Any]]:
    old = m.status.get("conditions") or []
    values = {
        ConditionType.READY: plan.ready,
        ConditionType.RECONCILING: _reconciling(plan),
        ConditionType.STALLED: plan.stalled,
        ConditionType.EXPANDED: _expanded(m, ledger),
        ConditionType.ROLLED_OUT: plan.rolled_out,
        ConditionType.CONTRACTED: plan.contracted,
    }
    return [condition(old, kind, values[kind], now, m.generation) for kind in ConditionType]


def _reconciling(plan: PhasePlan) -> Condition:
    """Never Reconciling while Stalled (Flux's convention): kstatus reads the first abnormal True
    condition, so both True reads InProgress and `helm --wait` sits out its timeout."""
    if plan.stalled.status:
        return Condition(False, Reason.STALLED, "stalled: see the Stalled condition")
    return plan.reconciling


def _expanded(m: Migration, ledger: Ledger) -> Condition:
    if ledger.expanded is not None and ledger.expanded >= m.spec.version:
        return Condition(True, Reason.EXPANDED, f"schema is expanded to {ledger.expanded}")
    return Condition(False, Reason.EXPANDING, f"schema {m.spec.version} is not expanded yet")


def _gate(ledger: Ledger, observed: Observed) -> dict[str, Any]:
    pods = [p for p in observed.pods if not p.deleting]
    waiting = sum(1 for p in pods if not gate_for(p, observed, ledger.expanded).status)
    return {
        "workloads": [
            {
                "kind": w.kind,
                "name": w.name,
                "requiresVersion": _str(w.required),
                "updated": w.updated,
                "available": w.available,
                "desired": w.desired,
                "rolledOut": w.rolled_out,
            }
            for w in sorted(observed.workloads, key=lambda w: (w.kind, w.name))
        ],
        "podsWaiting": waiting,
        "podsReady": len(pods) - waiting,
    }


def without_nulls(value: Any) -> Any:
    """The status as the API server stores it: a merge patch drops null fields, so a status
    with nulls would never compare equal to what is stored, and be written again and again."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def merge_patch(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """An RFC 7386 merge patch from `current` to `desired`: fields that must go become null."""
    patch: dict[str, Any] = {key: None for key in current if key not in desired}
    for key, value in desired.items():
        old = current.get(key)
        patch[key] = merge_patch(old, value) if isinstance(value, dict) and isinstance(old, dict) else value
    return patch


def _str(version: Version | None) -> str | None:
    return str(version) if version else None

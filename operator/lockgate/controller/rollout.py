"""The rollout, and the rule that contract runs only after it (pure).

Contract is destructive: it runs once expand and background succeeded, every gated workload
runs only pods requiring >= spec.version, spec.contract.delay has passed since then, and,
if required, the version is approved. contract_verdict() is where that is decided.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..shared.phases import Phase
from ..shared.timestamps import parse_time
from ..shared.versions import Version
from .conditions import Condition, ConditionType, Reason, StatusPhase, find
from .ledger import Ledger
from .observed import Observed
from .spec import Migration
from .waves import behind

NO_VERSION = Version((0,))
WAITING_FOR_ROLLOUT = Condition(
    False, Reason.WAITING_FOR_ROLLOUT, "contract runs after background and the rollout complete"
)


@dataclass(frozen=True)
class ContractVerdict:
    """Where contract stands; `may_run` when its Job may be claimed now."""

    phase: StatusPhase
    contracted: Condition
    may_run: bool = False
    requeue_after: float | None = None


def rollout(observed: Observed, target: Version, kinds: tuple[str, ...]) -> Condition:
    """Whether every gated workload finished its rollout and no pod still needs an older schema."""
    old_pods = [p.name for p in observed.pods if (p.required or NO_VERSION) < target]
    workloads = [w for w in observed.workloads if w.kind in kinds]
    pending = [f"{w.kind}/{w.name}" for w in workloads if not w.rolled_out or (w.required or NO_VERSION) < target]
    if pending or old_pods:
        waiting = ", ".join((pending + [f"pod/{p}" for p in old_pods])[:3])
        more = len(pending) + len(old_pods) - 3
        return Condition(
            False,
            Reason.ROLLING_OUT,
            f"waiting for {waiting}{f' and {more} more' if more > 0 else ''} to run only pods requiring >= {target}",
        )
    return Condition(
        True, Reason.ROLLOUT_COMPLETE, f"{len(workloads)} gated workload(s) run only pods requiring >= {target}"
    )


def contract_verdict(m: Migration, ledger: Ledger, rolled_out: Condition, observed: Observed) -> ContractVerdict:
    """Called once expand and background are done for spec.version."""
    v, spec = m.spec.version, m.spec
    if not spec.phase(Phase.CONTRACT).enabled:
        phase = StatusPhase.COMPLETE if rolled_out.status else StatusPhase.ROLLING_OUT
        return ContractVerdict(phase, Condition(False, Reason.DISABLED, "contract.enabled is false"))
    if ledger.reached(Phase.CONTRACT, v) and not behind(spec.targets, ledger.history, Phase.CONTRACT, v):
        return ContractVerdict(
            StatusPhase.COMPLETE, Condition(True, Reason.CONTRACTED, f"the contract phase of {v} is done")
        )
    if not rolled_out.status:
        return ContractVerdict(StatusPhase.ROLLING_OUT, WAITING_FOR_ROLLOUT)
    remaining = _delay_remaining(m, observed)
    if remaining > 0:
        message = f"contract starts after contract.delay ({spec.contract_delay}); {remaining:.0f}s to go"
        return ContractVerdict(
            StatusPhase.CONTRACT_PENDING, Condition(False, Reason.DELAYED, message), requeue_after=remaining
        )
    if spec.contract_requires_approval and m.approved_version != str(v):
        message = f"annotate lockgate.dev/approve-contract={v} to run the contract phase"
        return ContractVerdict(StatusPhase.AWAITING_APPROVAL, Condition(False, Reason.AWAITING_APPROVAL, message))
    return ContractVerdict(StatusPhase.CONTRACTING, Condition(False, Reason.CONTRACTING), may_run=True)


def _delay_remaining(m: Migration, observed: Observed) -> float:
    """Seconds of contract.delay left, counted from when RolledOut last became True."""
    delay = m.spec.contract_delay
    if not delay:
        return 0.0
    since = find(m.status.get("conditions") or [], ConditionType.ROLLED_OUT)
    started = (
        parse_time(since["lastTransitionTime"]) if since and since.get("status") == "True" else None
    ) or observed.now
    return max(0.0, (started + delay - observed.now).total_seconds())

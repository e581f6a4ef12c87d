"""The plan for spec.version: walk its phases in order and stop at the first that is not done (pure).

Expand, then background (beside the rollout), then contract (rollout.contract_verdict); a lowered
spec.version keeps the newer schema or, if spec.rollback allows, runs undo. Which Job to claim
is the ledger's rule (ledger.next_job); the plan only carries the claim back to decide().
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..shared.phases import UNDO, Phase
from ..shared.versions import Version
from .conditions import Condition, Reason, StatusPhase
from .diagnosis import cannot_start
from .history_entry import HistoryEntry
from .ledger import JobRequest, JobVerdict, Ledger
from .observed import Observed
from .rollout import WAITING_FOR_ROLLOUT, contract_verdict, rollout
from .spec import Migration
from .targets import CANARY
from .waves import behind, next_wave_job

NOT_STALLED = Condition(False, Reason.NO_FAILURE, "no Job of this version has failed")
PAUSED = Condition(
    False,
    Reason.PAUSED,
    "background work is paused by the lockgate.dev/paused annotation: its Job is suspended after the batch "
    "in flight; remove the annotation to resume after the last committed batch",
)
PAUSED_CONTRACT = Condition(False, Reason.PAUSED, "contract waits for the paused background phase")


@dataclass(frozen=True)
class PhasePlan:
    phase: StatusPhase
    ready: Condition
    reconciling: Condition
    stalled: Condition
    rolled_out: Condition
    contracted: Condition
    request: JobRequest | None = None  # the Job this plan claims
    requeue_after: float | None = None


def plan_for(m: Migration, ledger: Ledger, observed: Observed) -> PhasePlan:
    if m.spec.problems:
        return _invalid(m.spec.problems)
    expanded = ledger.expanded
    if expanded is not None and m.spec.version < expanded:
        return _lowered(m, ledger, observed, expanded)
    if not ledger.reached(Phase.EXPAND, m.spec.version):
        return _expanding(m, ledger, observed)
    return _after_expand(m, ledger, observed)


def _expanding(m: Migration, ledger: Ledger, observed: Observed) -> PhasePlan:
    v = m.spec.version
    plan = PhasePlan(
        phase=StatusPhase.EXPANDING,
        ready=Condition(False, Reason.EXPANDING, f"expanding the schema to {v}: pods requiring it wait at the gate"),
        reconciling=Condition(True, Reason.EXPANDING),
        stalled=NOT_STALLED,
        rolled_out=Condition(False, Reason.ROLLOUT_WAITING, "waiting for the expand phase"),
        contracted=Condition(False, Reason.WAITING_FOR_EXPAND, "contract runs after expand and the rollout"),
    )
    verdict = next_wave_job(ledger, observed, m, Phase.EXPAND, v, m.spec.image)
    return _with_verdict(
        replace(plan, reconciling=Condition(True, Reason.EXPANDING, verdict.waiting)), verdict, observed
    )


def _after_expand(m: Migration, ledger: Ledger, observed: Observed) -> PhasePlan:
    v = m.spec.version
    rolled_out = rollout(observed, v, m.spec.gate_kinds)
    plan = PhasePlan(
        phase=StatusPhase.ROLLING_OUT,
        ready=Condition(True, Reason.SCHEMA_EXPANDED, f"schema {v} is expanded: pods requiring it pass the gate"),
        reconciling=Condition(
            False, Reason.SCHEMA_EXPANDED, "the gate is open; background and contract continue on their own"
        ),
        stalled=NOT_STALLED,
        rolled_out=rolled_out,
        contracted=WAITING_FOR_ROLLOUT,
    )
    if behind(m.spec.targets, ledger.history, Phase.EXPAND, v):  # new targets: the gate stays open meanwhile
        verdict = next_wave_job(ledger, observed, m, Phase.EXPAND, v, m.spec.image)
        catching_up = Condition(True, Reason.EXPANDING, f"bringing new targets up to {v}: {verdict.waiting}")
        return _with_verdict(replace(plan, phase=StatusPhase.EXPANDING, reconciling=catching_up), verdict, observed)
    if m.spec.phase(Phase.BACKGROUND).enabled and not done(m, ledger, Phase.BACKGROUND):
        verdict = next_wave_job(ledger, observed, m, Phase.BACKGROUND, v, m.spec.image)
        if m.paused and not verdict.failed:  # a failed phase stays Stalled: pausing it changes nothing
            return replace(plan, phase=StatusPhase.PAUSED, reconciling=PAUSED, contracted=PAUSED_CONTRACT)
        return _with_verdict(replace(plan, phase=StatusPhase.BACKFILLING), verdict, observed)
    contract = contract_verdict(m, ledger, rolled_out, observed)
    if not contract.may_run:
        return replace(plan, phase=contract.phase, contracted=contract.contracted, requeue_after=contract.requeue_after)
    verdict = next_wave_job(ledger, observed, m, Phase.CONTRACT, v, m.spec.image)
    if verdict.failed:
        return job_failed(plan, verdict.failed)
    contracting = Condition(False, Reason.CONTRACTING, verdict.waiting)
    return _with_verdict(replace(plan, phase=StatusPhase.CONTRACTING, contracted=contracting), verdict, observed)


def done(m: Migration, ledger: Ledger, phase: Phase) -> bool:
    """`phase` of spec.version succeeded, for every target spec.targets lists now."""
    return ledger.reached(phase, m.spec.version) and not behind(m.spec.targets, ledger.history, phase, m.spec.version)


def _lowered(m: Migration, ledger: Ledger, observed: Observed, expanded: Version) -> PhasePlan:
    v = m.spec.version
    if m.spec.rollback_policy != "Undo":
        message = f"spec.version {v} is below the expanded {expanded}; rollback.policy Never keeps the newer schema (expand is additive), so nothing runs and pods requiring <= {expanded} pass the gate"
        return _at_rest(StatusPhase.NEWER_SCHEMA_KEPT, Reason.NEWER_SCHEMA_KEPT, message, ready=True)
    plan = PhasePlan(
        phase=StatusPhase.ROLLING_BACK,
        ready=Condition(False, Reason.ROLLING_BACK, f"undoing the schema from {expanded} to {v}"),
        reconciling=Condition(True, Reason.ROLLING_BACK, f"undo Job to {v} is running"),
        stalled=NOT_STALLED,
        rolled_out=Condition(False, Reason.ROLLING_BACK),
        contracted=Condition(False, Reason.ROLLING_BACK),
    )
    image = ledger.image_of(expanded)
    if image is None:
        message = f"no image is recorded for version {expanded}, so its undo scripts cannot be run; apply them by hand or restore spec.version"
        return replace(
            plan,
            phase=StatusPhase.FAILED,
            stalled=Condition(True, Reason.NO_UNDO_IMAGE, message),
        )
    return _with_verdict(plan, next_wave_job(ledger, observed, m, UNDO, v, image), observed)


def _invalid(problems: tuple[str, ...]) -> PhasePlan:
    """A spec lockgate cannot use (accepted by an older CRD): nothing runs until it is fixed."""
    message = f"the spec cannot be used: {'; '.join(problems)}"
    return _at_rest(StatusPhase.FAILED, Reason.INVALID_SPEC, message, ready=False)


def _at_rest(phase: StatusPhase, reason: Reason, message: str, ready: bool) -> PhasePlan:
    """Nothing runs, and every condition gives the same reason: ready and settled (a newer schema
    kept), or stalled until the spec changes."""
    return PhasePlan(
        phase,
        ready=Condition(ready, reason, message),
        reconciling=Condition(False, reason, message),
        stalled=Condition(not ready, reason, "" if ready else message),
        rolled_out=Condition(ready, reason),
        contracted=Condition(False, reason),
    )


def _with_verdict(plan: PhasePlan, verdict: JobVerdict, observed: Observed) -> PhasePlan:
    """The plan with the verdict's claim, or failed with the verdict's failed Job, or stalled while
    the running Job cannot start its container (until that is fixed). A passing cause (the API
    server did not answer the kubelet) only says so in Reconciling: Ready and Stalled keep still."""
    if verdict.failed:
        return job_failed(plan, verdict.failed)
    if verdict.awaiting_approval:  # the gate stays as it is: closed, or open for a catch-up
        awaiting = Condition(True, Reason.AWAITING_CANARY_APPROVAL, verdict.waiting)
        return replace(plan, phase=StatusPhase.AWAITING_CANARY_APPROVAL, reconciling=awaiting)
    cause = cannot_start(verdict.running, observed) if verdict.running else None
    if cause and not cause.passing:
        stalled = Condition(True, Reason.JOB_CANNOT_START, cause.message)
        return replace(plan, stalled=stalled, ready=replace(stalled, status=False))
    plan = replace(plan, request=verdict.request, requeue_after=verdict.requeue_after)
    return replace(plan, reconciling=replace(plan.reconciling, message=cause.message)) if cause else plan


def job_failed(plan: PhasePlan, entry: HistoryEntry) -> PhasePlan:
    held = "; the other targets wait for the canaries" if entry.wave == CANARY else ""
    message = f"{entry.step} Job {entry.job} failed: {entry.error or 'see its logs'}{held}; fix the cause, then change the spec or set the lockgate.dev/retry annotation to retry"
    return replace(
        plan,
        phase=StatusPhase.FAILED,
        stalled=Condition(True, Reason.JOB_FAILED, message),
        ready=Condition(False, Reason.JOB_FAILED, message),
        request=None,
    )


def blocked(plan: PhasePlan, error: str) -> PhasePlan:
    """The operator itself cannot act (RBAC, API errors): say so where users look (status_of then
    clears Reconciling, as for every Stalled plan)."""
    message = f"the operator cannot act: {error}"
    return replace(
        plan,
        stalled=Condition(True, Reason.OPERATOR_ERROR, message),
        ready=Condition(False, Reason.OPERATOR_ERROR, message),
    )

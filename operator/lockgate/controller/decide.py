"""What the operator does for one SchemaMigration, decided from what it observes (pure).

decide(Observed) -> Decision is the one entry point to every rule of the operator; the kopf
shell only gathers the observed state, writes the status, creates Jobs, patches pod gates
and posts events. Where each rule lives:
- ledger.py: status.history, the versions reached, and the exactly-once claim of a Job;
- phase_plan.py: which phase of spec.version is next (expand, background, undo);
- rollout.py: the rollout, and contract only after it;
- gate.py: which gated pods may pass;
- status.py, conditions.py, events.py: what the status and the Events say.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .background import PROGRESS_REFRESH, may_start, progress_pods, to_suspend
from .diagnosis import starting
from .events import Event, events_for
from .gate import GatePatch, gate_patches, held_pods
from .history_entry import HistoryEntry, Result
from .ledger import JobRef, JobRequest, Ledger
from .observed import JobView, Observed, PodView
from .phase_plan import blocked, plan_for
from .selectors import SELECTOR_REFRESH
from .status import status_of

EVENTS_RECHECK = 10.0


@dataclass(frozen=True)
class Decision:
    status: dict[str, Any] | None = None  # the whole new status, when it changed
    create: JobRequest | None = None  # the Job claimed in `status`: created only once that is written
    start: tuple[JobRef, ...] = ()  # suspended Jobs bound to their claim in `status`: unsuspended once written
    suspend: tuple[JobRef, ...] = ()  # running background Jobs, while lockgate.dev/paused says so
    progress: dict[str, Any] | None = None  # status.progress: the background phase's, for the metrics
    lost: tuple[str, ...] = ()  # bound Jobs this decision calls gone: the shell checks first
    delete: tuple[JobRef, ...] = ()  # suspended Jobs no claim is bound to: late creates, deleted unrun
    gates: tuple[GatePatch, ...] = ()
    release: tuple[str, ...] = ()  # Jobs whose result finalizer may go once the status is written
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None
    finished: tuple[HistoryEntry, ...] = ()  # history entries this decision completes
    held: tuple[PodView, ...] = ()  # pods the gate holds after this decision, for the metrics


def decide(observed: Observed) -> Decision:
    migration = observed.migration
    if migration is None or migration.deleting:
        return _without_migration(observed, deleting=migration is not None)
    ours = tuple(j for j in observed.jobs if j.owner_uid == migration.uid)
    foreign = tuple(j.name for j in observed.jobs if j.owner_uid != migration.uid and j.has_finalizer)
    observed = dataclasses.replace(observed, jobs=ours)
    ledger = Ledger.from_status(migration.status)
    lost = ledger.record_lost(observed)
    finished, report_retry = ledger.record_finished(observed)
    binding = ledger.bind(ours, observed.now)
    plan = plan_for(migration, ledger, observed)
    if observed.error:
        plan = blocked(plan, observed.error)
    if plan.request:
        ledger.claim(plan.request, observed.now)
    status = status_of(migration, ledger, plan, observed)
    recorded = tuple(j.name for j in ours if j.has_finalizer and _result_kept(j, ledger))
    return Decision(
        status=status if status != migration.status else None,
        create=plan.request,
        start=tuple(j for j in binding.start if may_start(migration, j, ours)),
        suspend=to_suspend(migration, ours),
        progress=status.get("progress"),
        delete=binding.delete,
        gates=gate_patches(observed, ledger.expanded),
        held=held_pods(observed, ledger.expanded),
        release=foreign + recorded,
        events=events_for(migration.status, status, plan.request, lost + finished),
        requeue_after=min(filter(None, (plan.requeue_after, report_retry, _recheck(observed))), default=None),
        finished=tuple(lost + finished),
        lost=tuple(e.job for e in lost),
    )


def _recheck(observed: Observed) -> float | None:
    """Events, logs and Secrets are not watched: while a started Job runs no container, or a
    background Job runs, look again soon (for why it does not start, and for its progress); with a
    Secret selector, now and then (a new tenant's Secret is a new target, a relabelled one a canary)."""
    if starting(observed):
        return EVENTS_RECHECK
    if progress_pods(observed):
        return PROGRESS_REFRESH
    targets = observed.migration.spec.targets if observed.migration else None
    return SELECTOR_REFRESH if targets and (targets.selector or targets.canary_selector) else None


def _result_kept(job: JobView, ledger: Ledger) -> bool:
    """Whether the Job's finalizer may go: its result is in the history, or it is a late create
    being deleted (no claim is bound to it: there is no result to keep)."""
    if job.deleting and ledger.late(job):
        return True
    return (job.state != Result.RUNNING or job.deleting) and ledger.is_recorded(job.name)


def _without_migration(observed: Observed, deleting: bool) -> Decision:
    """The SchemaMigration is gone or going: let go of its Jobs; hold only new pods at the gate."""
    release = tuple(j.name for j in observed.jobs if j.has_finalizer)
    if deleting:
        return Decision(release=release)
    return Decision(gates=gate_patches(observed, None), release=release, held=held_pods(observed, None))

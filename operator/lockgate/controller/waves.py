"""Canary first: which wave of a fan-out phase runs next, and when a phase is behind its targets (pure).

With spec.targets.canary every phase (expand, background, contract, undo) runs in two waves, one
Job each, claimed like any Job (ledger.next_job, keyed by phase, version and wave): the canary
wave over the first `canary` targets, then the rest wave over the others, which is claimed only
right after a canary Job of that phase and version succeeded (for expand also only once
lockgate.dev/approve-canary names the version, if canary.requireApproval). A failed canary Job
stalls the phase like any failed Job: nothing else runs until a retry's canary Job succeeds. A
failed rest Job is retried without the canaries; anything else that runs a phase again (new
targets) starts with the canary wave. Only the rest wave's success advances the versions, so the
gate opens when every target expanded. A schemaQuery's canary wave is its first `canary` indexes
(shards), the rest wave the others (targets.wave_targets).
"""

from __future__ import annotations

from ..shared.phases import Phase
from ..shared.versions import Version
from .history_entry import HistoryEntry, Result
from .ledger import JobVerdict, Ledger, next_job
from .observed import Observed
from .spec import APPROVE_CANARY_ANNOTATION, Migration
from .targets import CANARY, REST, WHOLE, Targets, digest, wave_targets, waves


def next_wave_job(
    ledger: Ledger, observed: Observed, m: Migration, phase: str, version: Version, image: str
) -> JobVerdict:
    """The verdict on the Job of the wave that runs next; a new rest Job of expand waits for its
    approval when canary.requireApproval asks for one (`awaiting_approval`)."""
    targets = m.spec.targets
    if not targets or not targets.canary:
        return next_job(ledger, observed, m, phase, version, image)
    wave = REST if canary_passed(targets, ledger.history, phase, version) else CANARY
    verdict = next_job(ledger, observed, m, phase, version, image, wave)
    approved = not targets.canary_approval or phase != Phase.EXPAND or m.canary_approved_version == str(version)
    if verdict.request is None or wave == CANARY or approved:
        return verdict
    if targets.query:  # only the pods know the schemas: the waves are counted in indexes
        canaries = f"schemas of the {targets.canary} canary index(es)"
        others = f"other {targets.indexes - targets.canary} indexes' schemas"
    else:
        canaries, others = f"{targets.canary} canary target(s)", f"other {len(targets.names) - targets.canary}"
    message = (
        f"the {canaries} expanded {version}; annotate {APPROVE_CANARY_ANNOTATION}={version} to expand the {others}"
    )
    return JobVerdict(waiting=message, awaiting_approval=True)


def canary_passed(targets: Targets, history: list[HistoryEntry], phase: str, version: Version) -> bool:
    """Whether the rest wave may run: the last Job of this phase and version that succeeded is a
    canary Job over the canaries listed now (a rest Job after it starts a new round)."""
    succeeded = [
        e
        for e in history
        if e.phase == phase and e.version == version and e.result == Result.SUCCEEDED and e.wave in (CANARY, REST)
    ]
    return bool(succeeded) and succeeded[-1].wave == CANARY and _covers(succeeded[-1], targets, CANARY)


def behind(targets: Targets | None, history: list[HistoryEntry], phase: str, version: Version) -> bool:
    """Whether `phase` of `version` succeeded, but not for every wave's targets as spec.targets
    lists them now: the targets added since (a new tenant) need it too. Its new Jobs cover every
    target; those that have it apply nothing (the runner's history), and the gate, open already,
    stays open."""
    if targets is None:
        return False
    succeeded = [e for e in history if e.phase == phase and e.version == version and e.result == Result.SUCCEEDED]
    if not succeeded:
        return False
    # A Job of one database (spec.targets added since) covered none of the targets.
    return not all(_covers(_last(succeeded, wave), targets, wave) for wave in waves(targets))


def _last(entries: list[HistoryEntry], wave: str) -> HistoryEntry | None:
    return next((e for e in reversed(entries) if (e.wave or WHOLE) == wave), None)


def _covers(entry: HistoryEntry | None, targets: Targets, wave: str) -> bool:
    covered = (entry.targets or {}).get("covered") if entry else None
    return covered == digest(wave_targets(targets, wave).listing())

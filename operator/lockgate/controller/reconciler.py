"""Runs decide() for a SchemaMigration whenever anything it depends on changes, and carries out the result.

Requests for the same SchemaMigration coalesce: while one reconcile runs, later requests
mark it dirty and it runs once more, so bursts of pod events cost one pass, not dozens.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import enum
import logging
import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from ..shared.progress import last_progress
from . import metrics
from .background import progress_pods
from .decide import Decision, decide
from .diagnosis import event_subjects
from .kube import KubeApi
from .kube_client import describe_error, is_transient
from .ledger import JobRequest
from .manifests import job_manifest
from .observed import Observed
from .pod_security import Level
from .spec import Migration, parse_migration, with_selected
from .status import merge_patch

log = logging.getLogger("lockgate.reconciler")
Key = tuple[str, str]  # (namespace, SchemaMigration name)
MAX_CONFLICTS = 5
FORBIDDEN = 403
# An API server outage shorter than this (a restart, an etcd election) is retried quietly: no
# Stalled, no Warning Event. Refusals (403, 422) show at once.
TRANSIENT_GRACE = 60.0


class Action(enum.StrEnum):
    """What a pass carries out, in order; the last one begun is the one that failed."""

    OBSERVE = "observe"
    STATUS = "status"
    CREATE = "create"
    BIND = "bind"
    GATES = "gates"
    RELEASE = "release"
    EVENTS = "events"


class StaleView(Exception):
    """This replica's watches are behind the API server: retry the pass later."""


@dataclasses.dataclass(frozen=True)
class Failure:
    """The last failure to act on a SchemaMigration: shown in its status until `action` succeeds."""

    message: str
    count: int  # in a row: the backoff grows with it
    action: Action  # what failed
    since: float  # monotonic time of the first failure in a row
    transient: bool  # an outage (connection, 5xx): shown only once it lasts TRANSIENT_GRACE

    def shown(self, now: float) -> bool:
        return not self.transient or now - self.since >= TRANSIENT_GRACE

    def backoff(self) -> float:
        """Short for an outage, so the operator notices its end soon; longer for a refusal."""
        first, cap = (1.0, 15.0) if self.transient else (5.0, 60.0)
        return min(cap, first * 2.0 ** (self.count - 1))


def next_failure(previous: Failure | None, message: str, action: Action, transient: bool, now: float) -> Failure:
    if previous is None or previous.transient != transient:  # an outage after a refusal starts its own clock
        return Failure(message, 1, action, now, transient)
    return Failure(message, previous.count + 1, action, previous.since, transient)


class Reconciler:
    def __init__(
        self, kube: KubeApi, observe: Callable[[Key], Observed], pod_security: Level = Level.RESTRICTED
    ) -> None:
        self.kube = kube
        self.observe = observe  # reads the kopf indexes: no API calls
        self.pod_security = pod_security  # what a spec may ask for its pods (pod_security.py)
        self._running: dict[Key, asyncio.Task[None]] = {}
        self._dirty: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._errors: dict[Key, Failure] = {}

    def request(self, key: Key) -> None:
        """Passes and timers run in an empty context, not the caller's: a kopf handler's context holds
        the whole body of the event that called it, which they would keep alive until they end."""
        if key in self._running:
            self._dirty.add(key)
            return
        self._running[key] = asyncio.get_running_loop().create_task(
            self._loop(key), name=f"reconcile {key[0]}/{key[1]}", context=contextvars.Context()
        )

    async def _loop(self, key: Key) -> None:
        try:
            while True:
                self._dirty.discard(key)
                await self.reconcile(key)
                if key not in self._dirty:
                    return
        finally:
            del self._running[key]

    async def reconcile(self, key: Key) -> None:
        """One pass, now; a failure is logged, shown in the status and retried with backoff."""
        started = time.monotonic()
        done: list[Action] = []  # what this pass carried out, in order: on an error, the last one failed
        try:
            await self._reconcile_once(key, done)
        except Exception as exc:  # one bad object must not stop the others: retry it later, with backoff
            action, transient = (done or [Action.OBSERVE])[-1], isinstance(exc, StaleView) or is_transient(exc)
            failure = next_failure(self._errors.get(key), describe_error(exc), action, transient, time.monotonic())
            self._errors[key] = failure
            metrics.RECONCILE_ERRORS.labels(action.value, str(transient).lower()).inc()
            level = logging.WARNING if transient else logging.ERROR
            log.log(level, "%s/%s: %s (attempt %d; retrying)", key[0], key[1], failure.message, failure.count)
            self._schedule(key, failure.backoff())
        else:
            # Only a pass that carried out what failed clears it: one with nothing to retry yet (a
            # fresh claim, say) would otherwise clear Stalled for a moment and reset the backoff.
            if (pending := self._errors.get(key)) is not None and pending.action in done:
                del self._errors[key]
                self.request(key)  # clear the error from the status
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)

    async def _reconcile_once(self, key: Key, done: list[Action]) -> None:
        done.append(Action.OBSERVE)
        failure = self._errors.get(key)
        shown = failure is not None and failure.shown(time.monotonic())
        observed = dataclasses.replace(self.observe(key), error=failure.message if failure and shown else None)
        observed = await self._with_selected(await self._with_progress(await self._with_warnings(observed)))
        for _ in range(MAX_CONFLICTS):
            decision = decide(observed)
            if decision.status is not None:
                done.append(Action.STATUS)
            if await self._confirmed(observed, decision):
                await self._act(observed, decision, done)
                return
            metrics.STATUS_CONFLICTS.inc()
            fresh = await asyncio.to_thread(self.kube.get_migration, *key)
            migration = parse_migration(fresh, self.pod_security) if fresh else None
            observed = await self._with_selected(dataclasses.replace(observed, migration=migration))
        self._schedule(key, 1.0)

    async def _with_selected(self, observed: Observed) -> Observed:
        """Add the Secrets spec.targets.databases.selector matches, as targets, and order the canary
        selector's first (spec.with_selected). A 403 (the chart grants `list` on Secrets only when
        asked) is a problem of the spec until granted."""
        m = observed.migration
        targets = m.spec.targets if m else None
        if m is None or targets is None or not (targets.selector or targets.canary_selector) or m.spec.problems:
            return observed
        found = await self._secret_names(observed.namespace, targets.selector)
        canaries = await self._secret_names(observed.namespace, targets.canary_selector)
        return dataclasses.replace(observed, migration=with_selected(m, found, canaries))

    async def _secret_names(self, namespace: str, selector: str) -> tuple[str, ...] | None:
        """The names of the Secrets a selector matches (none without one); None when forbidden."""
        if not selector:
            return ()
        try:
            return await asyncio.to_thread(self.kube.secret_names, namespace, selector)
        except ApiException as exc:
            if exc.status != FORBIDDEN:
                raise
            return None

    async def _with_warnings(self, observed: Observed) -> Observed:
        """Add the Warning Events that say why a started Job runs no container (diagnosis.py)."""
        subjects = event_subjects(observed)
        if not subjects:
            return observed
        try:
            warnings = await asyncio.to_thread(self.kube.warnings, observed.namespace, subjects)
        except Exception as exc:  # best effort: the pods' own status still explains most causes
            log.warning("%s/%s: cannot read Events: %s", observed.namespace, observed.name, describe_error(exc))
            return observed
        return dataclasses.replace(observed, warnings=warnings)

    async def _with_progress(self, observed: Observed) -> Observed:
        """Add the newest progress line of each running background pod (background.py)."""
        pods = progress_pods(observed)
        if not pods:
            return observed
        tails = await asyncio.gather(
            *(asyncio.to_thread(self.kube.log_tail, observed.namespace, pod) for pod in pods), return_exceptions=True
        )
        progress = {}
        for pod, tail in zip(pods, tails, strict=True):
            if isinstance(tail, BaseException):  # best effort: the status keeps the last progress seen
                log.warning("%s/%s: cannot read the log of %s: %s", observed.namespace, observed.name, pod, tail)
            elif (found := last_progress(tail)) is not None:
                progress[pod] = found
        return dataclasses.replace(observed, progress=progress)

    async def _confirmed(self, observed: Observed, decision: Decision) -> bool:
        """Write the status, guarded by resourceVersion; False if another writer came first.

        What a decision does to existing Jobs (start, suspend, delete) is guarded the same way,
        even with no status change: an empty patch at the observed resourceVersion is refused
        when this view is behind, so a replica whose watch lags never deletes a Job that another
        has just claimed. A Job called lost is first looked up: a lagging Job watch is no proof."""
        m = observed.migration
        touches_jobs = decision.start or decision.suspend or decision.delete or decision.lost
        if m is None or (decision.status is None and not touches_jobs):
            return True
        for name in decision.lost:
            if await asyncio.to_thread(self.kube.job_exists, m.namespace, name):
                raise StaleView(f"Job {name} exists, but this operator's watch does not show it yet")
        patch = merge_patch(m.status, decision.status) if decision.status is not None else {}
        written = await asyncio.to_thread(self.kube.write_status, m.namespace, m.name, m.resource_version, patch)
        return written is not None

    async def _act(self, observed: Observed, decision: Decision, done: list[Action]) -> None:
        """Everything after the status write: it has been accepted, so these are safe to do."""
        namespace, where = observed.namespace, f"{observed.namespace}/{observed.name}"
        _log_recorded(where, decision)
        # The gauges follow the status just written, even if a later step fails (as a refused create does).
        metrics.show_progress(namespace, observed.name, decision.progress)
        m = observed.migration
        status = decision.status if decision.status is not None else m.status if m is not None else None
        metrics.MIGRATIONS.update(namespace, observed.name, status, decision.held)
        if decision.create and observed.migration is not None:
            done.append(Action.CREATE)
            await self._create(where, observed.migration, decision.create)
        await self._bind(where, namespace, decision, done)
        if decision.gates:
            done.append(Action.GATES)
        await asyncio.gather(*(asyncio.to_thread(self.kube.patch_gate, namespace, gate) for gate in decision.gates))
        for gate in decision.gates:
            log.info("%s: gate %s for pod %s (%s)", where, "open" if gate.ready else "closed", gate.pod, gate.reason)
        if decision.release:
            done.append(Action.RELEASE)
        await asyncio.gather(*(asyncio.to_thread(self.kube.release_job, namespace, job) for job in decision.release))
        if observed.migration is not None and decision.events:
            done.append(Action.EVENTS)
            target = _event_target(observed.migration)
            for event in decision.events:
                await asyncio.to_thread(self.kube.post_event, target, event)
        metrics.observe(decision)
        if decision.requeue_after is not None:
            self._schedule((namespace, observed.name), decision.requeue_after)

    async def _create(self, where: str, migration: Migration, request: JobRequest) -> None:
        owner = await asyncio.to_thread(self.kube.create_job, job_manifest(migration, request))
        if owner not in (None, migration.uid):
            log.error(
                "%s: Job %s exists but belongs to another owner; delete it to let lockgate go on", where, request.name
            )
            return
        how = "adopted" if owner else "created"
        log.info("%s: %s Job %s for version %s %s", where, request.phase, request.name, request.version, how)

    async def _bind(self, where: str, namespace: str, decision: Decision, done: list[Action]) -> None:
        """Start the Jobs bound to their claims; delete the late creates no claim is bound to."""
        if decision.start or decision.suspend or decision.delete:
            done.append(Action.BIND)
        for job in decision.start:
            await asyncio.to_thread(self.kube.start_job, namespace, job)
            log.info("%s: Job %s started (uid %s bound to its claim)", where, job.name, job.uid)
        for job in decision.suspend:
            await asyncio.to_thread(self.kube.suspend_job, namespace, job)
            log.info("%s: Job %s suspended: background work is paused", where, job.name)
        for job in decision.delete:
            await asyncio.to_thread(self.kube.delete_job, namespace, job)
            log.warning(
                "%s: Job %s (uid %s) deleted: suspended, and no claim is bound to it (a create that landed late)",
                where,
                job.name,
                job.uid,
            )

    def _schedule(self, key: Key, delay: float) -> None:
        """Reconcile again after `delay` (contract delay, claim grace, retry after an error)."""
        if (timer := self._timers.pop(key, None)) is not None:
            timer.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(
            max(0.05, delay), self._fire, key, context=contextvars.Context()
        )

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.request(key)


def _log_recorded(where: str, decision: Decision) -> None:
    if decision.status is not None:
        log.info("%s: status written, phase %s", where, decision.status.get("phase"))
    for e in decision.finished:
        log.info("%s: %s Job %s for version %s %s", where, e.phase, e.job, e.version, str(e.result).lower())


def _event_target(m: Migration) -> dict[str, Any]:
    return {"metadata": {"name": m.name, "namespace": m.namespace, "uid": m.uid, "resourceVersion": m.resource_version}}

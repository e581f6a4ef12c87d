"""Many tenants, one SchemaMigration: spec.targets, its Indexed Job and how its targets stand (pure).

Each phase of each version still has exactly one Job (ledger.py): for spec.targets it is an Indexed
Job with one index per perPod targets, in the order the spec lists them (shared.targets.per_index),
the pod of an index migrating them one after another. Kubernetes runs the indexes,
at most maxParallel at a time, retries each one on its own (backoffLimitPerIndex) and stops the Job
once more than maxFailed indexes failed (maxFailedIndexes); the Job is Complete only when every
index succeeded, so the gate for a version opens only when every target expanded it, and a
target's failure leaves the others running and the Job Failed, naming it. The operator learns a
failure's cause from the index's pod (its termination message, which names each failed target of
several), never from a database. Each
finished Job records which target list it covered: a phase that succeeded for another list than
the spec's runs again (waves.behind), so new targets catch up. With a canary, each phase runs in
two waves, a Job each: the first `canary` targets, then the others (waves.py); canary.selector
moves its matches first (selectors.py). With a schemaQuery the pods list the schemas themselves
and count them in their reports (schema_query.py).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..shared.report import cut
from ..shared.targets import DATABASE, SCHEMA, SCHEMA_NAME, per_index, query_listing
from .schema_query import parse_query, reported

if TYPE_CHECKING:  # observed.py reads spec.py, which reads this module
    from ..shared.versions import Version
    from .history_entry import HistoryEntry
    from .observed import JobPodView, JobView

DEFAULT_MAX_PARALLEL = 4
DEFAULT_PER_POD = 1
MAX_TARGETS = 1000  # the CRD's maxItems: the list travels in the Job's environment
FAILURES_SHOWN = 10  # failed targets named in status, each in one line
CAUSE_CHARS = 300
SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
SECRETS = "spec.targets.databases.secrets"


@dataclass(frozen=True)
class Targets:
    """spec.targets, parsed: one kind of tenant, listed in index order."""

    kind: str  # shared.targets.SCHEMA or DATABASE
    names: tuple[str, ...]
    url_key: str = "url"  # DATABASE: the key of each Secret that holds its URL
    max_parallel: int = DEFAULT_MAX_PARALLEL
    max_failed: int | None = None  # None: every index runs, however many fail
    per_pod: int = DEFAULT_PER_POD  # targets each index migrates, one after another (shared.targets.per_index)
    canary: int = 0  # how many targets, first in the list, run first (0: no canary wave)
    canary_approval: bool = False  # the rest of expand waits for lockgate.dev/approve-canary
    # DATABASE: label selectors over Secrets (selectors.py): the matches follow `names`; the
    # canary's matches come first in `names`, `canary` of them, once the operator listed them.
    selector: str = ""
    canary_selector: str = ""
    query: str = ""  # SCHEMA listed by schemaQuery: the SQL each pod runs (`names` stays empty)
    indexes: int = 0  # schemaQuery: the shards, each migrating the schemas that hash to it
    first_index: int = 0  # schemaQuery with a canary: the first shard of this wave's Job
    index_count: int = 0  # ... and how many (0: every shard from first_index on)

    def job_indexes(self) -> int:
        """A schemaQuery Job's indexes: its wave's shards."""
        return self.index_count or self.indexes - self.first_index

    def listing(self) -> tuple[str, ...]:
        """What its Jobs cover, for `digest`: the names, or a schemaQuery's SQL and its wave's shards."""
        if self.query:
            return query_listing(self.query, self.indexes, self.first_index, self.job_indexes())
        return self.names


# A Job's wave: every target, or with a canary the first `canary` targets, then the others.
WHOLE, CANARY, REST = "", "canary", "rest"


def waves(targets: Targets | None) -> tuple[str, ...]:
    """The waves each phase runs, in order."""
    return (CANARY, REST) if targets and targets.canary else (WHOLE,)


def wave_targets(targets: Targets, wave: str) -> Targets:
    """The targets one Job of `wave` covers, in index order: its index i migrates names[i]; a
    schemaQuery's, the schemas of shard first_index + i (the canary wave: the first `canary` shards)."""
    if wave == CANARY:
        return replace(targets, names=targets.names[: targets.canary], index_count=targets.canary)
    if wave == REST:
        return replace(targets, names=targets.names[targets.canary :], first_index=targets.canary)
    return targets


def parse_targets(raw: Mapping[str, Any], has_database: bool, history_table: str | None) -> tuple[Targets, list[str]]:
    """spec.targets and what is wrong with it, each problem naming its field (the CRD refuses the
    same; this catches bodies that did not pass through it)."""
    problems: list[str] = []
    schemas, databases, query = raw.get("schemas"), raw.get("databases"), raw.get("schemaQuery")
    if [schemas, query, databases].count(None) != 2:
        problems.append(
            "spec.targets: set schemas (a schema per tenant), schemaQuery (a query listing them) or databases "
            "(a database per tenant), one of them"
        )
    sql, shards, wrong = parse_query(raw, int(raw.get("maxParallel", DEFAULT_MAX_PARALLEL))) if query else ("", 0, [])
    problems += wrong
    if schemas is not None or query is not None:
        kind, names, pattern = SCHEMA, list(schemas or []), SCHEMA_NAME
        field = "spec.targets.schemas" if schemas is not None else "spec.targets.schemaQuery"
        if not has_database:
            problems.append(f"{field}: set spec.database, the database that holds the schemas")
        if history_table and "." in history_table:
            problems.append("spec.database.historyTable: give the table's name only: each schema keeps its own")
    else:
        kind, names, pattern, field = DATABASE, list((databases or {}).get("secrets") or []), SECRET_NAME, SECRETS
        if has_database:
            problems.append("spec.database: remove it: with targets.databases each tenant's Secret holds its URL")
    raw_selector = (databases or {}).get("selector")
    if names or (raw_selector is None and not query):  # a selector or a query may list none here
        problems += name_problems(field, names, pattern)
    max_failed = raw.get("maxFailed")
    canary = raw.get("canary") or {}
    if int(raw.get("perPod", DEFAULT_PER_POD)) < 1:
        problems.append("spec.targets.perPod: give 1 or more targets per pod")
    count = canary.get("count", 0) if isinstance(canary.get("count", 0), int) else -1
    # A query's canary is its first indexes; a selector's matches are counted later (selectors.selected).
    most = (shards if query else MAX_TARGETS if raw_selector is not None else len(names)) - 1
    unit = "indexes (shards of the query's schemas)" if query else "targets"
    if canary and ("count" in canary) == ("selector" in canary):
        problems.append("spec.targets.canary: set count (the first targets) or selector (by label), one of them")
    elif "count" in canary and not 1 <= count <= most:
        problems.append(
            f"spec.targets.canary.count: {canary.get('count')!r} is not between 1 and {most}: the canary "
            f"wave runs the first count {unit} and leaves at least one for the rest"
        )
    return (
        Targets(
            kind,
            tuple(names),
            url_key=(databases or {}).get("key", "url"),
            max_parallel=int(raw.get("maxParallel", DEFAULT_MAX_PARALLEL)),
            max_failed=int(max_failed) if max_failed is not None else None,
            per_pod=int(raw.get("perPod", DEFAULT_PER_POD)),
            canary=max(count, 0),
            canary_approval=bool(canary.get("requireApproval", False)),
            query=sql,
            indexes=shards,
        ),
        problems,
    )


def name_problems(field: str, names: list[str], pattern: re.Pattern[str]) -> list[str]:
    problems = []
    if not names:
        problems.append(f"{field}: list 1 to {MAX_TARGETS} targets")
    elif len(names) > MAX_TARGETS:
        problems.append(
            f"{field}: {len(names)} targets, more than the {MAX_TARGETS} one Job's pods can carry: for more "
            "schemas use spec.targets.schemaQuery; split more databases over several SchemaMigrations"
        )
    if duplicates := sorted(n for n, times in Counter(map(str, names)).items() if times > 1):
        problems.append(f"{field}: {', '.join(duplicates)} listed more than once: list each target once")
    if bad := [n for n in names if not isinstance(n, str) or not pattern.fullmatch(n)]:
        problems.append(f"{field}: {', '.join(map(str, bad[:5]))} is not a valid name")
    return problems


def indexed_job(targets: Targets, backoff_limit: int) -> dict[str, Any]:
    """The Job spec fields of a fan-out Job: one index per perPod targets (a schemaQuery's: its
    `indexes`), retried on its own."""
    total = targets.job_indexes() if targets.query else len(per_index(targets.names, targets.per_pod))
    fields: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": total,
        "parallelism": min(targets.max_parallel, total),
        "backoffLimitPerIndex": backoff_limit,
    }
    if targets.max_failed is not None:
        fields["maxFailedIndexes"] = min(targets.max_failed, total)  # Kubernetes allows at most completions
    return fields


def secrets_volume(targets: Targets, name: str) -> dict[str, Any]:
    """Each database target's URL as a file named after its Secret; optional, so that a missing
    Secret fails its own index (the runner says which) instead of every pod's start."""
    sources = [
        {"secret": {"name": n, "items": [{"key": targets.url_key, "path": n}], "optional": True}} for n in targets.names
    ]
    # Readable by the runner's own user (the image's, or spec.podTemplate's): the pod runs nothing else.
    return {"name": name, "projected": {"sources": sources, "defaultMode": 0o444}}


@dataclass(frozen=True)
class Tally:
    """How the targets of one fan-out Job stand."""

    total: int
    succeeded: int = 0
    failed: int = 0
    running: int = 0
    failures: tuple[tuple[str, str], ...] = ()  # (target, cause), the first FAILURES_SHOWN
    covered: str = ""  # the digest of the Job's target list (`behind`)
    unreported: int = 0  # schemaQuery: indexes yet to report, their schemas not counted yet

    @property
    def pending(self) -> int:
        return max(0, self.total - self.succeeded - self.failed - self.running)

    def counts(self) -> dict[str, int]:
        done = {"total": self.total, "succeeded": self.succeeded, "failed": self.failed}
        unreported = {"unreportedIndexes": self.unreported} if self.unreported else {}
        return done | {"running": self.running, "pending": self.pending} | unreported

    def to_api(self) -> dict[str, Any]:
        """As a history entry keeps it: the counts and the failed targets shown."""
        failures = [{"target": t, "error": e} for t, e in self.failures]
        return (
            self.counts()
            | ({"failures": failures} if failures else {})
            | ({"covered": self.covered} if self.covered else {})
        )

    @classmethod
    def from_api(cls, data: Mapping[str, Any], total: int) -> Tally:
        """As a history entry keeps it; counts edited into something else read as none (`total` pending)."""
        try:
            failures = tuple((str(f["target"]), str(f["error"])) for f in data.get("failures") or [])
            done, failed, running, unreported = (
                int(data.get(k) or 0) for k in ("succeeded", "failed", "running", "unreportedIndexes")
            )
            covered = str(data.get("covered") or "")
            return cls(int(data.get("total") or total), done, failed, running, failures, covered, unreported)
        except (TypeError, ValueError, KeyError):
            return cls(total)

    def error(self) -> str | None:
        """The history entry's error: which targets failed, one cause each."""
        if not self.failed:
            return None
        named = "; ".join(f"{target}: {cause}" for target, cause in self.failures)
        more = f"; and {self.failed - len(self.failures)} more" if self.failed > len(self.failures) else ""
        return f"{self.failed} of {self.total} targets failed: {named}{more}"


def tally(job: JobView, pods: tuple[JobPodView, ...]) -> Tally:
    """Where a fan-out Job's targets stand, from its status and its pods' reports. A failed index
    failed the targets its pod's report names; without such a report, every target it covers."""
    done, failed = indexes(job.completed_indexes), indexes(job.failed_indexes)
    if job.indexes:  # a schemaQuery's: only its pods know its schemas
        seen = reported(job, pods, (done, failed), lambda i: cause(job, i, pods))
        named = seen.failures[:FAILURES_SHOWN]
        return Tally(
            seen.total, seen.total - seen.failed, seen.failed, 0, named, digest(job.listing()), seen.unreported
        )
    covered = per_index(job.targets, job.per_pod)
    finished = sum(len(covered[i]) for i in done | failed if i < len(covered))
    lost = [_failed_targets(job, i, covered[i], pods) for i in sorted(failed) if i < len(covered)]
    failed_count = sum(count for count, _ in lost)
    running = 0 if not job.live else min(job.active * job.per_pod, len(job.targets) - finished)
    named = tuple(pair for _, pairs in lost for pair in pairs)[:FAILURES_SHOWN]
    return Tally(len(job.targets), finished - failed_count, failed_count, running, named, digest(job.listing()))


def _failed_targets(
    job: JobView, index: int, names: tuple[str, ...], pods: tuple[JobPodView, ...]
) -> tuple[int, list[tuple[str, str]]]:
    """How many targets of a failed index failed, and those its last report names with their causes."""
    ran = sorted((p for p in pods if p.job == job.name and p.index == index), key=lambda p: p.finished or "")
    found = chunk_failures(names, ran[-1]) if ran else None
    if found:
        count, failures = found
        return count, [(t, cut(c, CAUSE_CHARS)) for t, c in failures.items()]
    return len(names), [(", ".join(names), cause(job, index, pods))]


def chunk_failures(names: tuple[str, ...], pod: JobPodView) -> tuple[int, dict[str, str]] | None:
    """How many targets of a failed index of several failed, and those named, with their causes,
    as its pod's last report says: those that failed, and those it had not reached when it died
    (SIGKILL, OOM: the runner rewrites its report after each target). None when the report does
    not say (a pod of one target, or no report): its whole chunk failed."""
    report = pod.report
    if not report or report.failed_count is None:
        return None
    unreached = names[report.reported :] if report.reported is not None else ()
    died = f"its pod died before reporting this target: kubectl logs {pod.name}"
    count = report.failed_count + len(unreached)
    return (count, dict(report.failed_targets) | dict.fromkeys(unreached, died)) if count else None


def digest(names: tuple[str, ...]) -> str:
    """A target list in a few characters, whatever its order."""
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:12]


def cause(job: JobView, index: int, pods: tuple[JobPodView, ...]) -> str:
    """Why an index failed: its last pod's report, else what Kubernetes says (bounded)."""
    ran = sorted((p for p in pods if p.job == job.name and p.index == index), key=lambda p: p.finished or "")
    said = next((p.report.error for p in reversed(ran) if p.report and p.report.error), None)
    if said is None and ran and ran[-1].report:
        said = f"the container exited with code {ran[-1].report.exit_code}"
    return cut(said or f"its pod failed without a result: kubectl logs job/{job.name} --all-pods", CAUSE_CHARS)


def applied_total(job: JobView, pods: tuple[JobPodView, ...]) -> int:
    """Scripts applied over all targets: each index's last report."""
    last: dict[int, int] = {}
    for pod in sorted((p for p in pods if p.job == job.name and p.report), key=lambda p: p.finished or ""):
        if pod.index is not None and pod.report and pod.report.applied is not None:
            last[pod.index] = pod.report.applied
    return sum(last.values())


def indexes(text: str) -> set[int]:
    """An Indexed Job's index set, as its status writes it: "0,2-4"."""
    found: set[int] = set()
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        found.update(range(int(first), int(last or first) + 1))
    return found


def summary(phase: str, counts: Tally) -> str:
    """The TARGETS column: how many targets the latest phase has done, and how many failed."""
    failed = f", {counts.failed} failed" if counts.failed else ""
    unreported = f", {counts.unreported} indexes to report" if counts.unreported else ""
    return f"{counts.succeeded}/{counts.total} {phase}{failed}{unreported}"


def targets_status(
    targets: Targets,
    history: list[HistoryEntry],
    version: Version,
    jobs: tuple[JobView, ...],
    pods: tuple[JobPodView, ...],
) -> dict[str, Any]:
    """status.targets: per phase of `version`, the counts of its latest Job of each wave, summed over
    every target (live while a Job runs, else as history recorded them; a wave not run yet counts
    as pending), the failed targets (bounded), and the TARGETS column's summary. With a schemaQuery
    the total is what the pods reported so far (schema_query.py), the most any phase counted."""
    mine = [e for e in history if e.version == version]
    latest, newest = {(e.phase, e.wave or WHOLE): e for e in mine}, {e.phase: e for e in mine}
    phases, failed, last, reported = {}, [], None, [0]
    for phase, entry in sorted(newest.items(), key=lambda item: history.index(item[1])):
        entries = [latest[phase, w] for w in waves(targets) if (phase, w) in latest] or [entry]
        tallies = [_counts(e, targets, jobs, pods) for e in entries] + _not_run(targets, phase, latest)
        counts = _summed(tallies, len(targets.names) or None)
        phases[phase] = {"job": entry.job, **({"wave": entry.wave} if entry.wave else {}), **counts.counts()}
        failed += [{"phase": phase, "target": t, "error": e} for t, e in counts.failures]
        last, reported = summary(phase, counts), reported + [counts.total]
    total = len(targets.names) or max(reported)
    state = {"kind": targets.kind, "total": total, "phases": phases}
    state |= {"schemaQuery": {"indexes": targets.indexes}} if targets.query else {}
    shown = {"failed": failed[:FAILURES_SHOWN]} if failed else {}
    canary = {"canary": targets.canary} if targets.canary else {}
    return state | canary | shown | {"summary": last or f"0/{total}"}


def _counts(entry: HistoryEntry, targets: Targets, jobs: tuple[JobView, ...], pods: tuple[JobPodView, ...]) -> Tally:
    live = next((j for j in jobs if j.name == entry.job and j.live), None)
    total = len(wave_targets(targets, entry.wave or WHOLE).names)
    return tally(live, pods) if live else Tally.from_api(entry.targets or {}, total)


def _not_run(targets: Targets, phase: str, latest: Mapping[tuple[str, str], HistoryEntry]) -> list[Tally]:
    """A schemaQuery's canary waves not run yet for `phase`: their indexes yet to report."""
    if not (targets.query and targets.canary):
        return []
    missing = [w for w in waves(targets) if (phase, w) not in latest]
    return [Tally(0, unreported=wave_targets(targets, w).job_indexes()) for w in missing]


def _summed(tallies: list[Tally], total: int | None) -> Tally:
    """The waves' counts as one phase's: over `total` targets, those no wave ran yet pending (None:
    a schemaQuery's, as many as its pods reported)."""
    failures = tuple(f for t in tallies for f in t.failures)[:FAILURES_SHOWN]
    done, failed, running, reported, unreported = (
        sum(getattr(t, k) for t in tallies) for k in ("succeeded", "failed", "running", "total", "unreported")
    )
    return Tally(reported if total is None else total, done, failed, running, failures, unreported=unreported)

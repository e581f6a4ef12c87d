"""Many tenants, one SchemaMigration: spec.targets, its Indexed Job and how its targets stand (pure).

Each phase of each version still has exactly one Job (ledger.py): for spec.targets it is an Indexed
Job with one index per target, in the order the spec lists them. Kubernetes runs the indexes,
at most maxParallel at a time, retries each one on its own (backoffLimitPerIndex) and stops the Job
once more than maxFailed indexes failed (maxFailedIndexes); the Job is Complete only when every
index succeeded, so the gate for a version opens only when every target expanded it, and a
target's failure leaves the others running and the Job Failed, naming it. The operator learns a
failure's cause from the index's pod (its termination message), never from a database. Each
finished Job records which target list it covered: a phase that succeeded for another list than
the spec's runs again (`behind`), so new targets catch up.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..shared.report import cut
from ..shared.targets import DATABASE, SCHEMA, SCHEMA_NAME
from .history_entry import Result

if TYPE_CHECKING:  # observed.py reads spec.py, which reads this module
    from ..shared.versions import Version
    from .history_entry import HistoryEntry
    from .observed import JobPodView, JobView

DEFAULT_MAX_PARALLEL = 4
MAX_TARGETS = 1000  # the CRD's maxItems: the list travels in the Job's environment
FAILURES_SHOWN = 10  # failed targets named in status, each in one line
CAUSE_CHARS = 300
SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


@dataclass(frozen=True)
class Targets:
    """spec.targets, parsed: one kind of tenant, listed in index order."""

    kind: str  # shared.targets.SCHEMA or DATABASE
    names: tuple[str, ...]
    url_key: str = "url"  # DATABASE: the key of each Secret that holds its URL
    max_parallel: int = DEFAULT_MAX_PARALLEL
    max_failed: int | None = None  # None: every index runs, however many fail


def parse_targets(raw: Mapping[str, Any], has_database: bool, history_table: str | None) -> tuple[Targets, list[str]]:
    """spec.targets and what is wrong with it, each problem naming its field (the CRD refuses the
    same; this catches bodies that did not pass through it)."""
    problems: list[str] = []
    schemas, databases = raw.get("schemas"), raw.get("databases")
    if (schemas is None) == (databases is None):
        problems.append(
            "spec.targets: set schemas (a schema per tenant) or databases (a database per tenant), one of them"
        )
    if schemas is not None:
        kind, names, pattern, field = SCHEMA, list(schemas), SCHEMA_NAME, "spec.targets.schemas"
        if not has_database:
            problems.append("spec.targets.schemas: set spec.database, the database that holds the schemas")
        if history_table and "." in history_table:
            problems.append("spec.database.historyTable: give the table's name only: each schema keeps its own")
    else:
        kind, names, pattern, field = (
            DATABASE,
            list((databases or {}).get("secrets") or []),
            SECRET_NAME,
            "spec.targets.databases.secrets",
        )
        if has_database:
            problems.append("spec.database: remove it: with targets.databases each tenant's Secret holds its URL")
    problems += _name_problems(field, names, pattern)
    max_failed = raw.get("maxFailed")
    return (
        Targets(
            kind,
            tuple(names),
            url_key=(databases or {}).get("key", "url"),
            max_parallel=int(raw.get("maxParallel", DEFAULT_MAX_PARALLEL)),
            max_failed=int(max_failed) if max_failed is not None else None,
        ),
        problems,
    )


def _name_problems(field: str, names: list[str], pattern: re.Pattern[str]) -> list[str]:
    problems = []
    if not names or len(names) > MAX_TARGETS:
        problems.append(f"{field}: list 1 to {MAX_TARGETS} targets")
    if duplicates := sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{field}: {', '.join(duplicates)} listed more than once: list each target once")
    if bad := [n for n in names if not isinstance(n, str) or not pattern.fullmatch(n)]:
        problems.append(f"{field}: {', '.join(map(str, bad[:5]))} is not a valid name")
    return problems


def indexed_job(targets: Targets, backoff_limit: int) -> dict[str, Any]:
    """The Job spec fields of a fan-out Job: one index per target, retried on its own."""
    total = len(targets.names)
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

    @property
    def pending(self) -> int:
        return max(0, self.total - self.succeeded - self.failed - self.running)

    def counts(self) -> dict[str, int]:
        done = {"total": self.total, "succeeded": self.succeeded, "failed": self.failed}
        return done | {"running": self.running, "pending": self.pending}

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
            done, failed, running = (int(data.get(k) or 0) for k in ("succeeded", "failed", "running"))
            return cls(int(data.get("total") or total), done, failed, running, failures, str(data.get("covered") or ""))
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
    """Where a fan-out Job's targets stand, from its status and its pods' reports."""
    done, failed = indexes(job.completed_indexes), indexes(job.failed_indexes)
    finished = len(done) + len(failed)
    running = 0 if not job.live else min(job.active, len(job.targets) - finished)
    named = [(job.targets[i], _cause(job, i, pods)) for i in sorted(failed)[:FAILURES_SHOWN] if i < len(job.targets)]
    return Tally(len(job.targets), len(done), len(failed), running, tuple(named), digest(job.targets))


def digest(names: tuple[str, ...]) -> str:
    """A target list in a few characters, whatever its order."""
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:12]


def behind(targets: Targets | None, history: list[HistoryEntry], phase: str, version: Version) -> bool:
    """Whether `phase` of `version` succeeded for another target list than spec.targets lists now:
    the targets added since (a new tenant) need it too. Its new Job covers every target; those
    that have it apply nothing (the runner's history), and the gate, open already, stays open."""
    if targets is None:
        return False
    succeeded = [e for e in history if e.phase == phase and e.version == version and e.result == Result.SUCCEEDED]
    # A Job of one database (spec.targets added since) covered none of the targets.
    return bool(succeeded) and (succeeded[-1].targets or {}).get("covered") != digest(targets.names)


def _cause(job: JobView, index: int, pods: tuple[JobPodView, ...]) -> str:
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
    return f"{counts.succeeded}/{counts.total} {phase}{failed}"


def targets_status(
    targets: Targets,
    history: list[HistoryEntry],
    version: Version,
    jobs: tuple[JobView, ...],
    pods: tuple[JobPodView, ...],
) -> dict[str, Any]:
    """status.targets: per phase of `version`, its latest Job's counts (live while it runs, else as
    history recorded them), the failed targets (bounded), and the TARGETS column's summary."""
    latest = {e.phase: e for e in history if e.version == version}
    phases, failed, last = {}, [], None
    for phase, entry in sorted(latest.items(), key=lambda item: history.index(item[1])):
        live = next((j for j in jobs if j.name == entry.job and j.live), None)
        counts = tally(live, pods) if live else Tally.from_api(entry.targets or {}, len(targets.names))
        phases[phase] = {"job": entry.job, **counts.counts()}
        failed += [{"phase": phase, "target": t, "error": e} for t, e in counts.failures]
        last = summary(phase, counts)
    state = {"kind": targets.kind, "total": len(targets.names), "phases": phases}
    shown = {"failed": failed[:FAILURES_SHOWN]} if failed else {}
    return state | shown | {"summary": last or f"0/{len(targets.names)}"}

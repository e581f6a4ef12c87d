"""spec.targets.schemaQuery: the schemas a SQL query lists, which only the Job's pods know (pure).

The operator never connects to a database, so it cannot list them: the Indexed Job gets a fixed
number of indexes, each pod runs the query itself and migrates the schemas whose stable hash falls
to its index (shared.targets.shard), and its report says how many schemas it covered and which
failed, with their causes. So the counts are those the pods reported so far: an index whose pod
has not reported yet is `unreported`, its schemas unknown. The gate still opens only when the Job
is Complete, every index succeeded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..shared.report import RunnerReport, cut

if TYPE_CHECKING:  # observed.py reads spec.py, which reads targets.py, which reads this module
    from .observed import JobPodView, JobView

FIELD = "spec.targets.schemaQuery"
INDEXES_PER_PARALLEL = 2  # indexes default to 2 × maxParallel: a slow index leaves the others work
MAX_INDEXES = 1000
CAUSE_CHARS = 300  # a failed schema's cause as status shows it (targets.CAUSE_CHARS)
MAX_SQL = 4000  # it travels in the Job's environment and is shown back, so it stays short
_EXAMPLE = "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\\_%'"
PER_POD = "each index migrates every schema that falls to it: remove perPod (or set it to 1)"


def parse_query(raw: Mapping[str, Any], max_parallel: int) -> tuple[str, int, list[str]]:
    """spec.targets.schemaQuery's SQL and indexes, and what is wrong, each problem naming its field."""
    query = raw.get("schemaQuery")
    query = query if isinstance(query, Mapping) else {}
    sql, problems = query.get("sql"), []
    if not isinstance(sql, str) or not sql.strip():
        problems.append(f"{FIELD}.sql: give the SELECT whose first column lists the schemas, e.g. {_EXAMPLE}")
    elif len(sql) > MAX_SQL:
        problems.append(f"{FIELD}.sql: {len(sql)} characters: keep the query under {MAX_SQL} (a view can help)")
    indexes = query.get("indexes", INDEXES_PER_PARALLEL * max_parallel)
    if not isinstance(indexes, int) or not 1 <= indexes <= MAX_INDEXES:
        problems.append(
            f"{FIELD}.indexes: {indexes!r} is not between 1 and {MAX_INDEXES}: the Job's indexes, "
            "each migrating the schemas whose hash falls to it"
        )
    if raw.get("perPod", 1) != 1:
        problems.append(f"spec.targets.perPod: no meaning with schemaQuery: {PER_POD}")
    return (sql if isinstance(sql, str) else ""), (indexes if isinstance(indexes, int) else 1), problems


@dataclass(frozen=True)
class Reported:
    """A schemaQuery Job's schemas as its pods reported them."""

    total: int = 0
    failed: int = 0
    failures: tuple[tuple[str, str], ...] = ()  # (schema, cause); (index i, cause) when its pod named none
    unreported: int = 0  # indexes not finished, or finished without a report seen yet


def reported(
    job: JobView, pods: tuple[JobPodView, ...], finished: tuple[set[int], set[int]], cause: Callable[[int], str]
) -> Reported:
    """The finished indexes (completed, failed) as their last pods' reports count them. A failed
    index counts the schemas its report names, and those its pod died before reaching (the report
    is rewritten after each); one whose pod counted nothing (the query failed, the pod was killed
    first) or named no schema counts as one failed target named by its index (its shard: a canary's
    rest Job's index 0 is shard first_index), with `cause`. A completed index without a count is
    unreported."""
    completed, failed = finished
    last = last_reports(job, pods)
    total = lost = 0
    failures: list[tuple[str, str]] = []
    for index in sorted(completed | failed):
        report = last.get(index)
        count = report.target_count if report else None
        if report is None or count is None:  # the query failed, or the pod died before it counted
            if index in failed:
                total, lost = total + 1, lost + 1
                failures.append((f"index {job.first_index + index}", cause(index)))
            continue
        bad = 0
        if index in failed:  # at least one failed target: the index failed
            unreached = count - report.reported if report.reported is not None else 0
            bad = max((report.failed_count or 0) + unreached, 1)
            failures += [(t, cut(c, CAUSE_CHARS)) for t, c in report.failed_targets]
            if unreached or not report.failed_count:
                said = f"{unreached} of its {count} schemas not reached: " if unreached else ""
                failures.append((f"index {job.first_index + index}", said + cause(index)))
        total, lost = total + max(count, bad), lost + bad
    unreported = job.index_count - len(completed | failed) + unreported_indexes(job, pods, completed)
    return Reported(total, lost, tuple(failures), unreported)


def unreported_indexes(job: JobView, pods: tuple[JobPodView, ...], completed: set[int]) -> int:
    """Completed indexes of a schemaQuery Job whose last pod's report (its count) is not seen yet:
    pods and Jobs arrive on separate watches (ledger.REPORT_GRACE waits for them)."""
    if not job.indexes:
        return 0
    last = last_reports(job, pods)
    return sum(1 for i in completed if last.get(i) is None or last[i].target_count is None)


def last_reports(job: JobView, pods: tuple[JobPodView, ...]) -> dict[int, RunnerReport]:
    """Each index's newest report."""
    last: dict[int, RunnerReport] = {}
    for pod in sorted((p for p in pods if p.job == job.name and p.report), key=lambda p: p.finished or ""):
        if pod.index is not None and pod.report:
            last[pod.index] = pod.report
    return last

"""Which tenants a pod of a fan-out Job migrates, and where each keeps its history (pure).

The operator lists a SchemaMigration's targets in its Indexed Job (shared/targets.py); Kubernetes
gives each pod its index (JOB_COMPLETION_INDEX), which stands for LOCKGATE_TARGETS_PER_POD targets
in a row (shared.targets.per_index), migrated one after another. A schema target runs against the one
database URL with that schema first on the search_path and its own history table (so its own
lock keys) in that schema; a database target reads its URL from the file the Job mounts for its
Secret, named after the Secret (the operator itself never reads it). With a schemaQuery
(LOCKGATE_TARGETS_QUERY) the pod lists the schemas itself (runner/schema_query.py) and takes those
whose shard is its index, offset in a canary's rest Job (`pick_listed`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..shared.errors import UsageError
from ..shared.targets import KINDS, SCHEMA, SCHEMA_NAME, per_index, shard, split


@dataclass(frozen=True)
class Target:
    kind: str  # shared.targets.SCHEMA or DATABASE
    name: str  # the schema, or the Secret holding the database's URL
    index: int
    total: int

    def describe(self) -> str:
        return f"target {self.index + 1} of {self.total}: {self.kind} {self.name}"


def pick(kind: str | None, names: str | None, index: str | None, per_pod: str | None = None) -> tuple[Target, ...]:
    """This pod's targets from the Job's environment, in order; none outside a fan-out Job."""
    if not kind and not names:
        return ()
    if kind not in KINDS:
        raise UsageError(f"LOCKGATE_TARGET_KIND {kind!r} is not one of {', '.join(KINDS)}")
    listed = split(names)
    if not listed:
        raise UsageError("LOCKGATE_TARGETS lists no target")
    if per_pod is not None and (not per_pod.isdigit() or int(per_pod) < 1):
        raise UsageError(f"LOCKGATE_TARGETS_PER_POD {per_pod!r} is not a whole number of at least 1")
    size = int(per_pod or 1)
    chunks = per_index(listed, size)
    if index is None or not index.isdigit() or int(index) >= len(chunks):
        raise UsageError(
            f"JOB_COMPLETION_INDEX {index!r} is not an index of the {len(listed)} targets, {size} per index: "
            "run it in an Indexed Job (completionMode: Indexed) whose completions match LOCKGATE_TARGETS"
        )
    first = int(index) * size
    return tuple(Target(kind, name, first + n, len(listed)) for n, name in enumerate(chunks[int(index)]))


def pick_listed(
    rows: list[str | None], index: str | None, indexes: str | None, first_index: str | None = None
) -> tuple[Target, ...]:
    """This pod's schemas of those a schemaQuery listed: the ones whose shard is its index (plus
    LOCKGATE_TARGETS_FIRST_INDEX in a canary's rest Job, whose index 0 is the first shard after the
    canaries'), once each, in name order. A row that is no plain schema name stays a target: it
    fails, named (schema_history_table), and the others go on. A NULL row reads as "NULL"."""
    if indexes is None or not indexes.isdigit() or int(indexes) < 1:
        raise UsageError(f"LOCKGATE_TARGETS_INDEXES {indexes!r} is not a whole number of at least 1")
    if first_index is not None and (not first_index.isdigit() or int(first_index) >= int(indexes)):
        raise UsageError(
            f"LOCKGATE_TARGETS_FIRST_INDEX {first_index!r} is not one of the {indexes} indexes of "
            "LOCKGATE_TARGETS_INDEXES: the first shard a canary's rest Job migrates"
        )
    first = int(first_index or 0)
    if index is None or not index.isdigit() or first + int(index) >= int(indexes):
        offset = f" plus LOCKGATE_TARGETS_FIRST_INDEX {first}" if first else ""
        rest = " (a canary's rest Job: LOCKGATE_TARGETS_INDEXES less LOCKGATE_TARGETS_FIRST_INDEX)" if first else ""
        raise UsageError(
            f"JOB_COMPLETION_INDEX {index!r}{offset} is not one of the {indexes} indexes of LOCKGATE_TARGETS_INDEXES: "
            f"run it in an Indexed Job whose completions match{rest}"
        )
    names = sorted({"NULL" if row is None else row for row in rows})
    mine = [name for name in names if shard(name, int(indexes)) == first + int(index)]
    return tuple(Target(SCHEMA, name, n, len(mine)) for n, name in enumerate(mine))


def schema_history_table(schema: str, table: str) -> str:
    """The history table of a schema target: the configured table, inside that schema."""
    if not SCHEMA_NAME.fullmatch(schema):
        raise UsageError(f"schema {schema!r} is not a plain name (a letter or _, then letters, digits or _)")
    if "." in table:
        raise UsageError(
            f"history table {table!r} names its schema: with a schema target each schema keeps its own, "
            "so give the table's name only"
        )
    return f"{schema}.{table}"

"""Which tenants a pod of a fan-out Job migrates, and where each keeps its history (pure).

The operator lists a SchemaMigration's targets in its Indexed Job (shared/targets.py); Kubernetes
gives each pod its index (JOB_COMPLETION_INDEX), which stands for LOCKGATE_TARGETS_PER_POD targets
in a row (shared.targets.per_index), migrated one after another. A schema target runs against the one
database URL with that schema first on the search_path and its own history table (so its own
lock keys) in that schema; a database target reads its URL from the file the Job mounts for its
Secret, named after the Secret (the operator itself never reads it).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..shared.errors import UsageError
from ..shared.targets import KINDS, SCHEMA_NAME, per_index, split


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

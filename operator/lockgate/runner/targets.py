"""Which tenant a pod of a fan-out Job migrates, and where that tenant keeps its history (pure).

The operator lists a SchemaMigration's targets in its Indexed Job (shared/targets.py); Kubernetes
gives each pod its index (JOB_COMPLETION_INDEX). A schema target runs against the one
database URL with that schema first on the search_path and its own history table (so its own
lock keys) in that schema; a database target reads its URL from the file the Job mounts for its
Secret, named after the Secret (the operator itself never reads it).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..shared.errors import UsageError
from ..shared.targets import KINDS, SCHEMA_NAME, split


@dataclass(frozen=True)
class Target:
    kind: str  # shared.targets.SCHEMA or DATABASE
    name: str  # the schema, or the Secret holding the database's URL
    index: int
    total: int

    def describe(self) -> str:
        return f"target {self.index + 1} of {self.total}: {self.kind} {self.name}"


def pick(kind: str | None, names: str | None, index: str | None) -> Target | None:
    """This pod's target from the Job's environment, or None outside a fan-out Job."""
    if not kind and not names:
        return None
    if kind not in KINDS:
        raise UsageError(f"LOCKGATE_TARGET_KIND {kind!r} is not one of {', '.join(KINDS)}")
    listed = split(names)
    if not listed:
        raise UsageError("LOCKGATE_TARGETS lists no target")
    if index is None or not index.isdigit() or int(index) >= len(listed):
        raise UsageError(
            f"JOB_COMPLETION_INDEX {index!r} is not an index of the {len(listed)} targets: "
            "run it in an Indexed Job (completionMode: Indexed) whose completions match LOCKGATE_TARGETS"
        )
    return Target(kind, listed[int(index)], int(index), len(listed))


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

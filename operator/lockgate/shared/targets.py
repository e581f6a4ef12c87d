"""The tenants of a fan-out Job, as the operator hands them to the runner (pure).

The operator writes them into the Indexed Job's container environment, in index order; each pod
picks its own by the index Kubernetes gives it (runner/targets.py); the operator reads them back
from the Job to name a failed index (controller/targets.py). With spec.targets.schemaQuery the
operator cannot list them (it never connects to a database): the Job gets the query and a number
of indexes, each pod runs the query and migrates the schemas whose `shard` is its index.
"""

from __future__ import annotations

import re
import zlib

SCHEMA, DATABASE = "schema", "database"  # a schema in spec.database, or a database whose URL a Secret holds
KINDS = (SCHEMA, DATABASE)
KIND_ENV = "LOCKGATE_TARGET_KIND"
NAMES_ENV = "LOCKGATE_TARGETS"  # comma-separated: neither schema nor Secret names have commas
PER_POD_ENV = "LOCKGATE_TARGETS_PER_POD"  # targets each index migrates, one after another (default 1)
QUERY_ENV = "LOCKGATE_TARGETS_QUERY"  # schemaQuery: the SQL each pod runs to list the schemas
INDEXES_ENV = "LOCKGATE_TARGETS_INDEXES"  # schemaQuery: how many indexes share its schemas out
FIRST_INDEX_ENV = "LOCKGATE_TARGETS_FIRST_INDEX"  # schemaQuery with a canary: the rest Job's index 0 is this shard
INDEX_ENV = "JOB_COMPLETION_INDEX"  # set by Kubernetes in each pod of an Indexed Job
SECRETS_DIR = "/var/run/lockgate/targets"  # a database target's URL: a file named after its Secret
# Schema names PostgreSQL takes unquoted (the CRD's pattern too); the runner quotes them all the same.
SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def joined(names: tuple[str, ...]) -> str:
    return ",".join(names)


def split(text: str | None) -> tuple[str, ...]:
    return tuple(name for name in (text or "").split(",") if name)


def per_index(names: tuple[str, ...], per_pod: int = 1) -> tuple[tuple[str, ...], ...]:
    """The targets each index of a fan-out Job covers, in index order: the `per_pod` listed from
    index × per_pod on (the last may get fewer), migrated one after another. The one place that
    maps indexes to targets, for the runner, the operator's counts and `lockgate status --targets`."""
    return tuple(names[first : first + per_pod] for first in range(0, len(names), per_pod))


def shard(name: str, indexes: int) -> int:
    """The index of a schemaQuery's Job that migrates schema `name`: a stable hash of the name (CRC-32
    of its UTF-8 bytes, the same in every process) modulo the Job's indexes. Not sorted chunks: a
    schema created while the Job runs lands in its own index and moves no other one."""
    return zlib.crc32(name.encode()) % indexes


def query_listing(sql: str, indexes: int, first: int = 0, count: int = 0) -> tuple[str, ...]:
    """A schemaQuery Job's target list, as far as the operator knows it: a new query or number of
    indexes is a new list (its phases run again over every schema; those that have them apply nothing).
    A canary's wave covers the `count` shards from `first` on (0: every one after it), a list of its own."""
    last = first + (count or indexes - first) - 1
    if first == 0 and last == indexes - 1:
        return (f"schemaQuery {indexes}: {sql}",)
    return (f"schemaQuery {indexes} shards {first}-{last}: {sql}",)

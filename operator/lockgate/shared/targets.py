"""The tenants of a fan-out Job, as the operator hands them to the runner (pure).

The operator writes them into the Indexed Job's container environment, in index order; each pod
picks its own by the index Kubernetes gives it (runner/targets.py); the operator reads them back
from the Job to name a failed index (controller/targets.py).
"""

from __future__ import annotations

import re

SCHEMA, DATABASE = "schema", "database"  # a schema in spec.database, or a database whose URL a Secret holds
KINDS = (SCHEMA, DATABASE)
KIND_ENV = "LOCKGATE_TARGET_KIND"
NAMES_ENV = "LOCKGATE_TARGETS"  # comma-separated: neither schema nor Secret names have commas
PER_POD_ENV = "LOCKGATE_TARGETS_PER_POD"  # targets each index migrates, one after another (default 1)
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

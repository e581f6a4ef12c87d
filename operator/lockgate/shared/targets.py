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
INDEX_ENV = "JOB_COMPLETION_INDEX"  # set by Kubernetes in each pod of an Indexed Job
SECRETS_DIR = "/var/run/lockgate/targets"  # a database target's URL: a file named after its Secret
# Schema names PostgreSQL takes unquoted (the CRD's pattern too); the runner quotes them all the same.
SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def joined(names: tuple[str, ...]) -> str:
    return ",".join(names)


def split(text: str | None) -> tuple[str, ...]:
    return tuple(name for name in (text or "").split(",") if name)


def per_index(names: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """The targets each index of a fan-out Job covers, in index order: one each. The one place
    that maps indexes to targets, for the operator's counts and `lockgate status --targets`."""
    return tuple((name,) for name in names)

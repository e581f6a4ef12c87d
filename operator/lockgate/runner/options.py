"""How a runner command runs: its options and their defaults, which are the CLI's defaults too (pure).

Apart from the runner's machinery, so that the CLI builds its parser from these defaults without
loading SQLAlchemy, psycopg or the SQL parser (`lockgate --version` answers at once).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..shared.phases import Phase
from ..shared.versions import Version

DEFAULT_HISTORY_TABLE = "lockgate_schema_history"


@dataclass(frozen=True)
class Limits:
    """When a batched script's next batch waits (batched/pressure.py decides); None switches that signal off."""

    max_replication_lag_s: float | None = 10.0
    max_replication_lag_bytes: int | None = 1 << 30  # about 10 s of replay on common hardware
    wait_on_vacuum: bool = True
    max_lock_waiters: int | None = 0


@dataclass(frozen=True)
class Options:
    """How a command runs; these defaults are the CLI's defaults too."""

    phase: Phase = Phase.EXPAND
    target: Version | None = None
    single_transaction: bool = False
    lock_wait: float = 300.0
    lock_timeout_ms: int = 3000
    lock_retries: int = 5
    statement_timeout: float = 0.0
    out_of_order: bool = False
    progress_file: str | None = None
    limits: Limits = field(default_factory=Limits)  # when batches of a batched script wait

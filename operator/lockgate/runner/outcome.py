"""A command's outcome: whatever it raises becomes its Summary's exit code and one-line message.

Shared by the Runner's commands and `lockgate exec`, which must not load the migration machinery.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..shared.errors import LockgateError
from .database import unexpected
from .summary import Summary


@contextmanager
def outcome(summary: Summary) -> Iterator[None]:
    """Turn any error into the summary's exit code and one-line message, and time the command."""
    started = time.monotonic()
    try:
        yield
    except LockgateError as exc:
        summary.fail(exc)
    except Exception as exc:
        summary.fail(unexpected(exc))
    finally:
        summary.duration_ms = int((time.monotonic() - started) * 1000)

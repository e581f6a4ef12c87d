"""How the runner talks to a person: one line at a time, to stderr or the pod's log (pure)."""

from __future__ import annotations

from collections.abc import Callable

Say = Callable[[str], None]

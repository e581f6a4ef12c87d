"""The one vocabulary of phases: their order, prerequisites, file prefixes and lock lanes (pure).

The runner (scripts, history, plan, lint, lock) and the operator (spec, decide) both speak it.
"""

from __future__ import annotations

import enum


class Phase(enum.StrEnum):
    """The forward phases of one schema version, in the order they run."""

    EXPAND = "expand"
    BACKGROUND = "background"
    CONTRACT = "contract"

    @property
    def prefix(self) -> str:
        """The first letter of its script files."""
        return {"expand": "V", "background": "A", "contract": "C"}[self.value]

    @property
    def prerequisites(self) -> tuple[Phase, ...]:
        """The phases of the same version that must have succeeded before this one runs."""
        order = tuple(Phase)
        return order[: order.index(self)]

    @property
    def additive(self) -> bool:
        """Whether it runs while old pods still serve, so it may only add (expand, background)."""
        return self is not Phase.CONTRACT


# What else a history entry can record besides a Phase.
UNDO = "undo"  # U scripts: take expand back to an older version
REPEATABLE = "repeatable"  # R scripts: re-run when their checksum changes, after expand
BASELINE = "baseline"  # an existing schema declared to be at a version


REPAIR = "repair"  # `lockgate repair`: removes failed history rows
EXEC = "exec"  # `lockgate exec`: another tool's run under the lock, kept for the audit only


def lane(step: str) -> str:
    """The lock lane a step runs in. Undo, baseline, repair and other tools (exec) change what
    expand relies on, so they share its lane: never side by side with an expand (runner lock and
    operator Jobs alike)."""
    return Phase.EXPAND.value if step in (UNDO, BASELINE, REPAIR, EXEC) else str(step)

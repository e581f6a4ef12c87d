"""The one vocabulary of phases: their order, prerequisites and lock lanes (pure).

A phase's script files start with its letter, spelled once in runner/scripts.Kind.

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
    def prerequisites(self) -> tuple[Phase, ...]:
        """The phases of the same version that must have succeeded before this one runs."""
        order = tuple(Phase)
        return order[: order.index(self)]

    @property
    def additive(self) -> bool:
        """Whether it runs while old pods still serve, so it may only add (expand, background)."""
        return self is not Phase.CONTRACT


# What else a history entry can record besides a Phase.
UNDO = "undo"  # U scripts: take expand back to an older version (the CRD's public name is `rollback`)
REPEATABLE = "repeatable"  # R scripts: re-run when their checksum changes, after expand
BASELINE = "baseline"  # an existing schema declared to be at a version


REPAIR = "repair"  # `lockgate repair`: removes failed history rows
EXEC = "exec"  # `lockgate exec`: another tool's run under the lock, kept for the audit only

# Not a step but a lane of its own: held per transaction while a runner creates lockgate's own
# tables (history, batch progress), so runners of different lanes that start together create
# each table once.
CREATE_TABLES = "create"


def lane(phase: str) -> str:
    """The lock lane a phase (or undo, baseline, repair, exec) runs in. Those four change what
    expand relies on, so they share its lane: never side by side with an expand (runner lock and
    operator Jobs alike)."""
    return Phase.EXPAND.value if phase in (UNDO, BASELINE, REPAIR, EXEC) else str(phase)

"""The test tiers, derived from what a test uses so that the markers cannot drift from the code.

A test's tier is the heaviest thing it needs: its fixtures (transitively, as pytest resolves them),
the `own_cluster` marker, and the Go-built tools its module imports (helm, hack/health, promtool).
`make check` runs the `unit` tier: no server, no binary, no root. Each test file sits in the folder named
after the heaviest tier among its tests, or in `tests/devcluster/` when it tests the harness itself;
`misplaced` finds the files that do not, and the session refuses to run until they move.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import pytest


class Tier(enum.Enum):
    description: str

    def __new__(cls, value: str, description: str) -> Tier:
        tier = object.__new__(cls)
        tier._value_ = value
        tier.description = description
        return tier

    UNIT = "unit", "pure: no server, no Go-built binary, no root (make check)"
    POSTGRES = "postgres", "talks to a real PostgreSQL server the session starts"
    TOOLS = "tools", "runs Go-built helpers (helm, hack/health, promtool) without a cluster"
    CLUSTER = "cluster", "needs the real Kubernetes control plane and node"

    @property
    def rank(self) -> int:
        return list(Tier).index(self)


# The fixtures that bring each tier in; pytest's fixture closure carries them through the
# fixtures built on them (`migrations` needs `kube`, which needs `cluster`).
FIXTURE_TIERS = {
    "cluster": Tier.CLUSTER,
    "postgres": Tier.POSTGRES,
    "own_postgres": Tier.POSTGRES,
}
# Support modules whose functions run Go-built binaries.
TOOL_MODULES = ("tests.chart_support", "tests.health_support", "tests.promtool_support")


def heaviest(tiers: list[Tier]) -> Tier:
    return max(tiers, key=lambda tier: tier.rank, default=Tier.UNIT)


def module_tier(module: ModuleType | None) -> Tier:
    imported = {getattr(value, "__module__", None) for value in vars(module).values()} if module else set()
    names = {getattr(value, "__name__", None) for value in vars(module).values()} if module else set()
    return Tier.TOOLS if (imported | names) & set(TOOL_MODULES) else Tier.UNIT


def tier_of(item: pytest.Item) -> Tier:
    fixtures = getattr(item, "fixturenames", ())
    found = [FIXTURE_TIERS[name] for name in fixtures if name in FIXTURE_TIERS]
    if item.get_closest_marker("own_cluster"):
        found.append(Tier.CLUSTER)
    found.append(module_tier(getattr(item, "module", None)))
    return heaviest(found)


HARNESS = "devcluster"  # the folder of the harness's own tests, whatever they use


def misplaced(tiers: Iterable[tuple[Path, Tier]], whole_files: bool) -> list[str]:
    """What to move where, for files outside the folder of their heaviest test's tier. With only part
    of a file collected (node ids, --lf), only a file lighter than a test it holds is known to be wrong."""
    per_file: dict[Path, Tier] = {}
    for path, tier in tiers:
        per_file[path] = heaviest([per_file.get(path, Tier.UNIT), tier])
    moves = []
    for path, tier in sorted(per_file.items()):
        folder = path.parent.name
        if folder == HARNESS or folder == tier.value:
            continue
        placed = next((t for t in Tier if t.value == folder), None)
        if whole_files or placed is None or placed.rank < tier.rank:
            moves.append(
                f"{path.name}: its heaviest test is {tier.value} ({tier.description}); move it to tests/{tier.value}/"
            )
    return moves

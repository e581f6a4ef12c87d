"""The tiers a test file's folder must name (tests/tiers.py)."""

from __future__ import annotations

from pathlib import Path

from tests.tiers import Tier, heaviest, misplaced

UNIT, POSTGRES, CLUSTER = Tier.UNIT, Tier.POSTGRES, Tier.CLUSTER


def test_a_file_belongs_with_its_heaviest_test() -> None:
    assert heaviest([UNIT, CLUSTER, POSTGRES]) is CLUSTER and heaviest([]) is UNIT
    mixed = Path("tests/postgres/test_batch.py")
    assert misplaced([(mixed, UNIT), (mixed, POSTGRES)], whole_files=True) == []
    assert misplaced([(Path("tests/devcluster/test_cluster.py"), CLUSTER)], whole_files=True) == []


def test_a_file_in_a_lighter_folder_is_always_refused() -> None:
    wrong = Path("tests/unit/test_x.py")
    (move,) = misplaced([(wrong, UNIT), (wrong, CLUSTER)], whole_files=False)
    assert move.startswith("test_x.py: its heaviest test is cluster") and move.endswith("move it to tests/cluster/")
    assert misplaced([(Path("tests/test_flat.py"), UNIT)], whole_files=False) == [
        "test_flat.py: its heaviest test is unit (pure: no server, no Go-built binary, no root (make check)); "
        "move it to tests/unit/"
    ]


def test_a_heavier_folder_is_refused_only_when_the_whole_file_was_collected() -> None:
    heavy = [(Path("tests/cluster/test_y.py"), UNIT)]
    assert misplaced(heavy, whole_files=False) == []
    assert misplaced(heavy, whole_files=True) == [
        "test_y.py: its heaviest test is unit (pure: no server, no Go-built binary, no root (make check)); move it to tests/unit/"
    ]

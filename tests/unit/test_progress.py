"""The lockgate-progress line a batched walk logs and the operator reads back (shared/progress.py)."""

from __future__ import annotations

import dataclasses

from lockgate.shared.progress import Progress, last_progress, progress_line, summed


def test_progress_lines_survive_the_log_round_trip() -> None:
    view = {"script": "A3__fill.sql", "state": "waiting", "rows": 7, "batches": 1, "percent": None}
    view |= {"rate_rows_per_s": 3.5, "eta_s": None}
    log = f"applying...\n{progress_line(view)}\nlockgate-progress {{torn\n"
    found = last_progress(log)
    assert found == Progress("A3__fill.sql", "waiting", 7, 1, None, 3.5, None)
    assert found.summary() == "7 rows (waiting)" and last_progress("no progress here") is None


def test_walks_of_several_tenants_add_up_their_rows_and_rates_never_their_percents() -> None:
    a = Progress("A3__fill.sql", "waiting", 1000, 10, 40.0, None, 30)
    b = Progress("A3__fill.sql", "running", 500, 5, 90.0, 250.0, 2)
    assert summed([a, b]) == Progress("A3__fill.sql", "running", 1500, 15, None, 250.0, None)
    assert summed([a]) == a  # one walk: as it said
    assert summed([a, dataclasses.replace(b, script="A4__more.sql")]).script == "A3__fill.sql, A4__more.sql"

"""The lockgate-progress line a batched walk logs and the operator reads back (shared/progress.py)."""

from __future__ import annotations

from lockgate.shared.progress import Progress, last_progress, progress_line


def test_progress_lines_survive_the_log_round_trip() -> None:
    view = {"script": "A3__fill.sql", "state": "waiting", "rows": 7, "batches": 1, "percent": None}
    view |= {"rate_rows_per_s": 3.5, "eta_s": None}
    log = f"applying...\n{progress_line(view)}\nlockgate-progress {{torn\n"
    found = last_progress(log)
    assert found == Progress("A3__fill.sql", "waiting", 7, 1, None, 3.5, None)
    assert found.summary() == "7 rows (waiting)" and last_progress("no progress here") is None

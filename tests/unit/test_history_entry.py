"""status.history entries read and written at the one edge: the wire format stays what earlier
versions wrote, and what this operator does not know or cannot read survives a status write."""

from __future__ import annotations

from datetime import datetime, timezone

from lockgate.controller.history_entry import HistoryEntry, Result
from lockgate.shared.versions import Version

FINISHED = {
    "version": "3",
    "phase": "expand",
    "job": "shop-expand-3-ab1c2",
    "attempt": "abc123",
    "image": "registry/shop:3",
    "result": "Succeeded",
    "jobUid": "u1",
    "startTime": "2026-11-21T11:59:00Z",
    "completionTime": "2026-11-21T11:59:30Z",
    "applied": 2,
    "schemaVersion": "3",
}
CLAIMED = {
    "version": "1.10",
    "phase": "background",
    "job": "shop-background-1-10-x",
    "attempt": "a",
    "image": "i",
    "result": "Running",
    "claimedAt": "2026-11-21T11:59:59Z",
    "jobUid": "u2",
    "boundAt": "2026-11-21T12:00:01Z",
}


def test_entries_read_typed_and_write_back_unchanged() -> None:
    for stored in (FINISHED, CLAIMED, {"version": "2", "phase": "expand", "job": "old", "result": "Failed"}):
        assert HistoryEntry.from_api(stored).to_api() == stored
    entry = HistoryEntry.from_api(CLAIMED)
    assert (entry.version, entry.result) == (Version.parse("1.10"), Result.RUNNING)
    assert entry.bound_at == datetime(2026, 11, 21, 12, 0, 1, tzinfo=timezone.utc)
    assert HistoryEntry.from_api(FINISHED).attempt == "abc123" and entry.error is None


def test_what_this_operator_does_not_know_or_cannot_read_is_kept_as_it_was() -> None:
    newer = FINISHED | {"database": "orders", "result": "Skipped", "version": "v3"}
    entry = HistoryEntry.from_api(newer)
    assert entry.result is None and entry.version is None  # matches no phase's query, as before
    assert entry.to_api() == newer

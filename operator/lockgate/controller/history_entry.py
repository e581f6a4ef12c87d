"""One entry of status.history, typed: the ledger's unit of exactly-once (pure).

Read from and written to the API's dict only here (from_api, to_api), as the ledger reads and
writes status (Ledger.from_status, status.status_of). The wire format is what earlier versions
wrote: a key this operator does not know (a newer one added it) or cannot read (edited by hand)
is kept as it was, in `other`, so a status write never drops what it does not understand.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from ..shared.timestamps import iso, parse_time
from ..shared.versions import Version

T = TypeVar("T")


class Result(enum.StrEnum):
    """How a Job stands: running (or claimed to run), or how it ended. The views' Job state and
    the history's result both speak it."""

    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


FINAL = (Result.SUCCEEDED, Result.FAILED)


@dataclass(frozen=True)
class HistoryEntry:
    version: Version | None  # None only when the stored text is unreadable (kept in `other`)
    phase: str
    job: str
    attempt: str | None  # entries from before attempt keys have none
    image: str | None
    result: Result | None  # None only for a result this operator does not know (kept in `other`)
    claimed_at: datetime | None = None  # while claimed and not yet finished
    job_uid: str | None = None  # the Job bound to the claim: any other Job of this name is a late create
    bound_at: datetime | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    applied: int | None = None  # migrations the runner applied, from its report
    schema_version: str | None = None  # the schema version the runner reported
    error: str | None = None
    targets: Mapping[str, Any] | None = None  # a fan-out Job's counts and failed targets (targets.Tally)
    wave: str | None = None  # with a canary: the Job's wave, canary or rest (targets.waves)
    other: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> HistoryEntry:
        other = {key: value for key, value in data.items() if key not in _KEYS}

        def read(key: str, parse: Callable[[Any], T | None]) -> T | None:
            try:
                return parse(data[key]) if data.get(key) is not None else None
            except ValueError:
                other[key] = data[key]
                return None

        return cls(
            version=read("version", _version),
            phase=data.get("phase", ""),
            job=data.get("job", ""),
            attempt=data.get("attempt"),
            image=data.get("image"),
            result=read("result", Result),
            claimed_at=read("claimedAt", parse_time),
            job_uid=data.get("jobUid"),
            bound_at=read("boundAt", parse_time),
            start_time=read("startTime", parse_time),
            completion_time=read("completionTime", parse_time),
            applied=data.get("applied"),
            schema_version=data.get("schemaVersion"),
            error=data.get("error"),
            targets=data.get("targets"),
            wave=data.get("wave"),
            other=other,
        )

    @property
    def step(self) -> str:
        """Its phase, and its wave when it ran in one: "expand canary"."""
        return f"{self.phase} {self.wave}" if self.wave else self.phase

    def to_api(self) -> dict[str, Any]:
        """The entry as status.history stores it: no nulls (a merge patch would drop them)."""
        known = {
            "version": _text(self.version),
            "phase": self.phase,
            "job": self.job,
            "attempt": self.attempt,
            "image": self.image,
            "result": _text(self.result),
            "claimedAt": _time(self.claimed_at),
            "jobUid": self.job_uid,
            "boundAt": _time(self.bound_at),
            "startTime": _time(self.start_time),
            "completionTime": _time(self.completion_time),
            "applied": self.applied,
            "schemaVersion": self.schema_version,
            "error": self.error,
            "targets": self.targets,
            "wave": self.wave,
        }
        return {**self.other, **{key: value for key, value in known.items() if value is not None}}


# The keys HistoryEntry reads; any other is kept as it is.
_KEYS = frozenset(
    {
        "version",
        "phase",
        "job",
        "attempt",
        "image",
        "result",
        "claimedAt",
        "jobUid",
        "boundAt",
        "startTime",
        "completionTime",
        "applied",
        "schemaVersion",
        "error",
        "targets",
        "wave",
    }
)


def _version(text: Any) -> Version:
    return Version.parse(str(text))


def _text(value: Version | Result | None) -> str | None:
    return None if value is None else str(value)


def _time(moment: datetime | None) -> str | None:
    return iso(moment) if moment is not None else None

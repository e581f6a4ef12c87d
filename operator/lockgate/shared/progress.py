"""The progress of a batched background script, as a log line the operator reads (pure).

The Job's pod has no Kubernetes credentials and the operator has no database credentials, so
the runner says how far it got in its own log, one marked JSON line per update, and the
operator reads the end of that log (`pods/log`, nothing more).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

MARKER = "lockgate-progress "


@dataclass(frozen=True)
class Progress:
    script: str
    state: str  # running, waiting (database under pressure), paused, done
    rows: int
    batches: int
    percent: float | None  # of the key range, where the table's size is known
    rate: float | None  # rows per second while running
    eta_seconds: int | None

    def summary(self) -> str:
        """What `kubectl get smig` shows: '42% 1,200,000 rows, 8m left'."""
        percent = f"{self.percent:g}% " if self.percent is not None else ""
        eta = f", {duration_text(self.eta_seconds)} left" if self.eta_seconds else ""
        waiting = f" ({self.state})" if self.state not in ("running", "done") else ""
        return f"{percent}{self.rows:,} rows{eta}{waiting}"


def summed(walks: list[Progress]) -> Progress:
    """The walks of several tenants in flight at once, as one: rows, batches and rates add up; a
    percent and an ETA do not (each walks its own table's key range), so those stay unknown."""
    if len(walks) == 1:
        return walks[0]
    states = {w.state for w in walks}
    return Progress(
        script=", ".join(sorted({w.script for w in walks})),
        state="running" if "running" in states else sorted(states)[0],
        rows=sum(w.rows for w in walks),
        batches=sum(w.batches for w in walks),
        percent=None,
        rate=sum(w.rate for w in walks if w.rate is not None) or None,
        eta_seconds=None,
    )


def progress_line(view: dict[str, Any]) -> str:
    """The marked line for one update, from the runner's progress view (header.view)."""
    progress = Progress(
        script=str(view["script"]),
        state=str(view["state"]),
        rows=int(view["rows"]),
        batches=int(view["batches"]),
        percent=view.get("percent"),
        rate=view.get("rate_rows_per_s"),
        eta_seconds=view.get("eta_s"),
    )
    return MARKER + json.dumps(asdict(progress), separators=(",", ":"))


def last_progress(log: str) -> Progress | None:
    """The newest well-formed progress line of a log, or None."""
    for line in reversed(log.splitlines()):
        start = line.find(MARKER)
        if start < 0:
            continue
        try:
            fields = json.loads(line[start + len(MARKER) :])
            return Progress(**{name: fields[name] for name in Progress.__dataclass_fields__})
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign line: an older one will do
    return None


def duration_text(seconds: float) -> str:
    """90 -> '1m30s', 4000 -> '1h06m'."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"

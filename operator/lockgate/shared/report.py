"""The runner's report in a container's termination message: one shape for the writer
(runner.summary) and the reader (the operator), so the two cannot drift (pure)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from . import redaction

# A Kubernetes termination message holds at most 4096 bytes.
TERMINATION_MESSAGE_LIMIT = 4096
ERROR_EXCERPT = 1000
# Where another tool's failure starts in its log: Flyway's and psql's `ERROR: ...`, `FATAL:`.
TOOL_ERROR_LINE = re.compile(r"^(ERROR|FATAL)\b", re.MULTILINE)


class ErrorReport(TypedDict):
    version: str | None
    script: str | None
    sqlstate: str | None
    message: str
    line: int | None


class Report(TypedDict):
    """The compact JSON document `lockgate migrate` and `undo` write to --summary-file."""

    command: str
    phase: str | None
    target: str | None
    schema_version: str | None
    exit_code: int
    message: str | None
    duration_ms: int
    applied_count: int
    pending_count: int
    applied: list[tuple[str, int]]  # (version or script, ms), newest kept when cut
    error: ErrorReport | None
    problems: list[str]
    # A pod migrating several targets: each failed one with its cause, the last ones dropped when
    # too long (failed_count keeps how many failed).
    failed_targets: NotRequired[list[tuple[str, str]]]
    failed_count: NotRequired[int]
    # How many of its targets, in order, have a result yet: rewritten after each, so a pod killed
    # mid-chunk still reports those; and each one's duration (ms), dropped when even without the
    # applied entries the report is too long.
    reported: NotRequired[int]
    durations: NotRequired[list[int]]
    target_count: NotRequired[int]  # how many targets the pod covered (a schemaQuery's: only it knows)


@dataclass(frozen=True)
class RunnerReport:
    """What the operator keeps of a migration container's termination message."""

    exit_code: int | None
    applied: int | None = None
    schema_version: str | None = None
    error: str | None = None
    failed_targets: tuple[tuple[str, str], ...] = ()  # a pod of several targets: (target, cause)
    failed_count: int | None = None  # how many of its targets failed; None: a pod of one target
    reported: int | None = None  # how many of its targets, in order, have a result; None: all of them
    durations: tuple[int, ...] = ()  # each reported target's ms, in order; () when not kept
    target_count: int | None = None  # how many targets it covered; None: a pod of one target


def encode(report: Report, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """The report in under `limit` bytes: the oldest applied entries go first (the operator reads only
    their count), then the targets' durations, then the last failed targets."""
    text = json.dumps(report, separators=(",", ":"))
    while len(text.encode()) >= limit and report["applied"]:
        report["applied"] = report["applied"][len(report["applied"]) // 2 + 1 :]
        text = json.dumps(report, separators=(",", ":"))
    if len(text.encode()) >= limit and "durations" in report:
        del report["durations"]
        text = json.dumps(report, separators=(",", ":"))
    while len(text.encode()) >= limit and report.get("failed_targets"):
        report["failed_targets"] = report["failed_targets"][:-1]
        text = json.dumps(report, separators=(",", ":"))
    return text


def parse_report(message: str | None, exit_code: int | None) -> RunnerReport:
    """Read lockgate's report; any other tool's message becomes the error text."""
    try:
        doc = json.loads(message or "")
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or "exit_code" not in doc:
        text = (message or "").strip()
        return RunnerReport(exit_code, error=log_excerpt(text) if text and exit_code else None)
    return RunnerReport(
        exit_code=doc.get("exit_code", exit_code),
        applied=doc.get("applied_count"),
        schema_version=doc.get("schema_version"),
        error=excerpt(error_text(doc)) if doc.get("exit_code") else None,
        failed_targets=_pairs(doc.get("failed_targets")),
        failed_count=_count(doc.get("failed_count")),
        reported=_count(doc.get("reported")),
        durations=tuple(d for d in doc.get("durations") or () if isinstance(d, int)),
        target_count=_count(doc.get("target_count")),
    )


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    """(target, cause) pairs, as a chunk's report lists them; anything else reads as none."""
    if not isinstance(value, list):
        return ()
    return tuple((str(p[0]), str(p[1])) for p in value if isinstance(p, list) and len(p) == 2)


def error_text(doc: dict[str, Any]) -> str:
    error = doc.get("error") or {}
    if error:
        where = f"{error.get('script')} line {error.get('line')}" if error.get("script") else "migration"
        return f"{where}: [{error.get('sqlstate')}] {error.get('message')}"
    return str(doc.get("message") or "; ".join(doc.get("problems") or []) or f"exit code {doc.get('exit_code')}")


def cut(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def excerpt(text: str) -> str:
    """An error text as status shows it: redacted and cut."""
    return cut(redaction.redact(text), ERROR_EXCERPT)


def log_excerpt(log_tail: str) -> str:
    """Another tool's log tail as status shows it, redacted: from its first error line on if it has one
    (the banner and progress lines before it, half a dozen of Flyway's, would fill the excerpt);
    otherwise its end, where a traceback (Django's, Alembic's) puts the error line."""
    found = TOOL_ERROR_LINE.search(log_tail)
    if found:
        return excerpt(log_tail[found.start() :])
    text = redaction.redact(log_tail)
    return text if len(text) <= ERROR_EXCERPT else "…" + text[len(text) - ERROR_EXCERPT + 1 :]

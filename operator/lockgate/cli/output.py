"""Everything the CLI prints: redacted; in JSON mode stdout holds only the document."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, TextIO

from ..shared import redaction
from ..shared.errors import ValidationRefused

if TYPE_CHECKING:
    from ..runner.summary import Summary


class Output:
    """Everything lockgate prints goes through here, redacted; JSON mode keeps stdout for the document."""

    def __init__(self, json_mode: bool, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    def progress(self, line: str) -> None:
        print(redaction.redact(line), file=self.stderr if self.json_mode else self.stdout, flush=True)

    def error(self, line: str) -> None:
        print(redaction.redact(f"lockgate: {line}"), file=self.stderr, flush=True)

    def document(self, data: object) -> None:
        print(redaction.redact(json.dumps(data, indent=2, default=str)), file=self.stdout, flush=True)

    def finish(self, summary: Summary, summary_file: str | None = None) -> int:
        if summary_file:
            write_report(summary_file, summary.compact())
        if self.json_mode:
            self.document(summary.to_dict())
        else:
            self._human(summary)
        return summary.exit_code

    def _human(self, summary: Summary) -> None:
        for note in summary.notes:
            self.progress(f"note: {note}")
        if summary.exit_code == 0:
            if summary.command == "plan":
                self._plan(summary)
            elif summary.command in {"migrate", "undo"}:
                version = f"; {summary.phase} is at {summary.schema_version}" if summary.schema_version else ""
                self.progress(f"done in {summary.duration_ms} ms{version}")
            return
        if isinstance(summary.problems, list) and summary.problems and summary.exit_code == ValidationRefused.exit_code:
            self.error("refused, nothing was run:")
            for problem in summary.problems:
                print(redaction.redact(f"  - {problem}"), file=self.stderr)
        else:
            self.error(summary.message or "failed")
        if summary.applied:
            self.progress(f"{len(summary.applied)} migration(s) applied before the failure stay applied")

    def _plan(self, summary: Summary) -> None:
        if not summary.pending:
            self.progress(f"nothing to do: {summary.phase} is up to date")
        for item in summary.pending:
            outside = item.get("outside_transaction") or []
            extra = f"  (outside a transaction: line {', '.join(map(str, outside))})" if outside else ""
            self.progress(f"would apply {item['script']}{extra}")


def write_report(path: str, text: str) -> None:
    """Overwrite the report so that whoever reads it at any instant finds one whole JSON document:
    the kubelet reads it when the container ends, a SIGKILL between two targets included. The new
    text, padded with spaces (JSON's whitespace) over the old one, in one write, then cut to its
    length. Not a temporary file renamed over it: /dev/termination-log is a bind mount, which a
    rename cannot replace."""
    data = redaction.redact(text).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data.ljust(os.fstat(fd).st_size, b" "), 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)

"""The `lockgate` command line: the one place where the runner and the operator meet."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..shared.errors import LockgateError
from .output import Output
from .parser import build_parser, command_of

if TYPE_CHECKING:
    from ..runner.summary import Summary
    from .arguments import Handler


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(command_of(argv)).parse_args(argv)
    out = Output(json_mode=getattr(args, "json", False))
    try:
        handler: Handler = args.handler
        return handler(args, out)
    except Exception as exc:
        if args.command == "run":  # the operator's own crash keeps its traceback for its logs
            raise
        return out.finish(_failed(args.command, exc))
    except KeyboardInterrupt:
        out.error("interrupted")
        return 130


def _failed(command: str, exc: Exception) -> Summary:
    """The summary of a command that raised. Its modules load only now: `--version` and `wait`
    never need the runner's summary, nor SQLAlchemy (which `unexpected` knows the errors of)."""
    from ..runner.summary import Summary

    summary = Summary(command)
    if isinstance(exc, LockgateError):
        summary.fail(exc)
    else:
        from ..runner.database import unexpected

        summary.fail(unexpected(exc))
    return summary

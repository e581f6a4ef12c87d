"""The `lockgate` command line: the one place where the runner and the operator meet."""

from __future__ import annotations

from collections.abc import Sequence

from ..runner.database import unexpected
from ..runner.summary import Summary
from ..shared.errors import LockgateError
from .output import Output
from .parser import Handler, build_parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Output(json_mode=getattr(args, "json", False))
    try:
        handler: Handler = args.handler
        return handler(args, out)
    except Exception as exc:
        if args.command == "run":  # the operator's own crash keeps its traceback for its logs
            raise
        summary = Summary(args.command)
        summary.fail(exc if isinstance(exc, LockgateError) else unexpected(exc))
        return out.finish(summary)
    except KeyboardInterrupt:
        out.error("interrupted")
        return 130

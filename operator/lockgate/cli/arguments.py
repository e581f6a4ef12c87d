"""The arguments of each `lockgate` command: option groups shared by the commands that take them.

cli/parser.py builds only the command being run from here. Runner defaults come from
runner.options (Options, Limits), declared there once.
"""

from __future__ import annotations

import argparse
import codecs
import os
from collections.abc import Callable

from ..controller.pod_security import Level
from ..runner.options import DEFAULT_HISTORY_TABLE, Limits, Options
from ..shared.phases import Phase
from ..shared.versions import Version
from .commands import (
    cmd_baseline,
    cmd_exec,
    cmd_info,
    cmd_lint,
    cmd_migrate,
    cmd_plan,
    cmd_repair,
    cmd_run,
    cmd_status,
    cmd_undo,
    cmd_wait,
)
from .output import Output

DEFAULTS = Options()
LIMITS = Limits()
Handler = Callable[[argparse.Namespace, Output], int]
Builder = Callable[[argparse.ArgumentParser], None]


def build(name: str, sub: argparse.ArgumentParser) -> None:
    """Give the subcommand `name` its handler and arguments."""
    handler, builder = COMMANDS[name]
    sub.set_defaults(handler=handler, json=False)
    builder(sub)


def _migrate(sub: argparse.ArgumentParser) -> None:
    _add(sub, *_DATABASE, *_SCRIPTS, _phase_options, _execution_options, _throttle_options)
    sub.add_argument(
        "--single-transaction", action="store_true", help="all pending migrations in one transaction: all or nothing"
    )
    sub.add_argument(
        "--progress-file",
        default=os.environ.get("LOCKGATE_PROGRESS_FILE"),
        help="keep a JSON document of a batched script's progress here (default: $LOCKGATE_PROGRESS_FILE)",
    )


def _baseline(sub: argparse.ArgumentParser) -> None:
    _add(sub, *_DATABASE)
    sub.add_argument("--version", dest="baseline_version", required=True, type=_version, help="the schema's version")


def _undo(sub: argparse.ArgumentParser) -> None:
    _add(sub, *_DATABASE, *_SCRIPTS, _execution_options)
    sub.add_argument("--to", required=True, type=_version, help="the version to return to")


def _run(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=_env_list("LOCKGATE_WATCH_NAMESPACES"),
        help="watch this namespace (repeatable; default: $LOCKGATE_WATCH_NAMESPACES, else all namespaces)",
    )
    run.add_argument(
        "--health-port", type=int, default=_env_int("LOCKGATE_HEALTH_PORT", 8080), help="/healthz port (0: off)"
    )
    run.add_argument(
        "--metrics-port", type=int, default=_env_int("LOCKGATE_METRICS_PORT", 9090), help="/metrics port (0: off)"
    )
    run.add_argument("--log-format", choices=["plain", "json"], default=os.environ.get("LOCKGATE_LOG_FORMAT", "plain"))
    run.add_argument(
        "--pod-security",
        type=Level,
        choices=list(Level),
        default=os.environ.get("LOCKGATE_POD_SECURITY", Level.RESTRICTED),
        help="the Pod Security level a SchemaMigration's pod may ask for: a spec asking for more is refused "
        "(default: $LOCKGATE_POD_SECURITY, else restricted)",
    )
    run.add_argument("--verbose", action="store_true", help="also kopf's per-handler logs")


def _wait(wait: argparse.ArgumentParser) -> None:
    wait.add_argument(
        "--name", default=os.environ.get("LOCKGATE_SCHEMAMIGRATION"), help="default: $LOCKGATE_SCHEMAMIGRATION"
    )
    wait.add_argument(
        "-n", "--namespace", default=os.environ.get("POD_NAMESPACE"), help="default: $POD_NAMESPACE, else the pod's"
    )
    wait.add_argument(
        "--version",
        dest="required",
        type=_version,
        default=os.environ.get("LOCKGATE_REQUIRES_VERSION"),
        help="the schema version required (default: $LOCKGATE_REQUIRES_VERSION)",
    )
    wait.add_argument("--timeout", type=_non_negative(float), default=600.0, metavar="SECONDS", help="default 600")


def _status(status: argparse.ArgumentParser) -> None:
    status.add_argument("name", nargs="?", help="one SchemaMigration (default: all)")
    status.add_argument("-n", "--namespace", help="namespace (default: all namespaces, or 'default' with NAME)")
    status.add_argument(
        "--targets",
        action="store_true",
        help="each tenant of NAME's spec.targets in each phase of its version: state, duration, the failed cause",
    )
    _json_option(status)


def _add(sub: argparse.ArgumentParser, *groups: Builder) -> None:
    for group in groups:
        group(sub)


def _json_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--json", action="store_true", help="print one JSON document")


def _dir_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--dir", help="migrations directory (default: $LOCKGATE_MIGRATIONS_DIR)")
    sub.add_argument(
        "--encoding",
        type=_encoding,
        default=os.environ.get("LOCKGATE_ENCODING", "utf-8"),
        help="the scripts' text encoding, e.g. latin-1 (default: $LOCKGATE_ENCODING, else utf-8)",
    )


def _database_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--database-url", help="default: $LOCKGATE_DATABASE_URL (prefer it: arguments show in ps)")
    sub.add_argument(
        "--history-table",
        default=os.environ.get("LOCKGATE_HISTORY_TABLE", DEFAULT_HISTORY_TABLE),
        help=f"[schema.]table (default: $LOCKGATE_HISTORY_TABLE, else {DEFAULT_HISTORY_TABLE})",
    )
    sub.add_argument(
        "--schema",
        default=os.environ.get("LOCKGATE_SCHEMA"),
        help="a tenant's schema (PostgreSQL): first on the search_path, with its own history table and lock "
        "(default: $LOCKGATE_SCHEMA)",
    )


def _exec_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--version-label",
        default=os.environ.get("LOCKGATE_TARGET_VERSION"),
        metavar="LABEL",
        help="recorded with the run (default: $LOCKGATE_TARGET_VERSION, which migration Jobs have)",
    )
    sub.add_argument(
        "--lock-wait",
        type=_non_negative(float),
        default=DEFAULTS.lock_wait,
        metavar="SECONDS",
        help="wait for another runner (%(default)g)",
    )
    # Not from $LOCKGATE_SUMMARY_FILE: in a Job, an empty termination message lets the tool's
    # own log tail (a Django traceback) become the error excerpt in the SchemaMigration's status.
    sub.add_argument("--summary-file", help="write a compact JSON summary here")
    sub.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]", help="the tool to run")


def _phase_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--phase", type=Phase, choices=list(Phase), default=DEFAULTS.phase)
    sub.add_argument("--target", type=_version, help="apply versions up to and including this one")
    sub.add_argument("--out-of-order", action="store_true", help="allow pending versions older than applied ones")


def _execution_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--summary-file",
        default=os.environ.get("LOCKGATE_SUMMARY_FILE"),
        help="write a compact JSON summary here, e.g. /dev/termination-log (default: $LOCKGATE_SUMMARY_FILE)",
    )
    seconds, count = _non_negative(float), _non_negative(int)
    for flag, dest, kind, metavar, text in (
        ("--lock-wait", "lock_wait", seconds, "SECONDS", "wait for another runner (%(default)g)"),
        ("--lock-timeout", "lock_timeout_ms", count, "MS", "lock_timeout per statement (%(default)s)"),
        ("--lock-retries", "lock_retries", count, "N", "retries after a lock timeout (%(default)s)"),
        ("--statement-timeout", "statement_timeout", seconds, "SECONDS", "per statement (%(default)g: none)"),
    ):
        sub.add_argument(flag, dest=dest, type=kind, default=getattr(DEFAULTS, dest), metavar=metavar, help=text)


def _throttle_options(sub: argparse.ArgumentParser) -> None:
    group = sub.add_argument_group("throttling of batched background scripts (a limit, or off)")
    for flag, dest, kind, metavar, text in (
        ("--max-replication-lag", "max_replication_lag_s", float, "SECONDS", "replay lag of a standby (%(default)s)"),
        ("--max-replication-lag-bytes", "max_replication_lag_bytes", int, "BYTES", "WAL left to replay (%(default)s)"),
        ("--max-lock-waiters", "max_lock_waiters", int, "N", "sessions queued for the table (%(default)s)"),
    ):
        group.add_argument(
            flag, dest=dest, type=_limit(kind), default=getattr(LIMITS, dest), metavar=metavar, help=text
        )
    group.add_argument(
        "--wait-on-vacuum",
        action=argparse.BooleanOptionalAction,
        default=LIMITS.wait_on_vacuum,
        help="wait while the table is vacuumed (default: wait)",
    )


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise SystemExit(f"lockgate: {name} must be a number") from None


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _version(text: str) -> Version:
    try:
        return Version.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _encoding(text: str) -> str:
    try:
        return codecs.lookup(text).name
    except LookupError:
        raise argparse.ArgumentTypeError(f"unknown encoding {text!r}: use e.g. utf-8, latin-1 or cp1252") from None


def _non_negative(kind: type) -> Callable[[str], object]:
    def parse(text: str) -> object:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text} must not be negative")
        return value

    return parse


def _limit(kind: type) -> Callable[[str], object]:
    """A non-negative number, or `off` (None: that signal never holds a batch back)."""
    number = _non_negative(kind)
    return lambda text: None if text == "off" else number(text)


_DATABASE: tuple[Builder, ...] = (_database_options, _json_option)
_SCRIPTS: tuple[Builder, ...] = (_dir_option,)
COMMANDS: dict[str, tuple[Handler, Builder]] = {
    "migrate": (cmd_migrate, _migrate),
    "plan": (cmd_plan, lambda sub: _add(sub, *_DATABASE, *_SCRIPTS, _phase_options)),
    "info": (cmd_info, lambda sub: _add(sub, *_DATABASE, *_SCRIPTS)),
    "lint": (cmd_lint, lambda sub: _add(sub, _json_option, *_SCRIPTS)),
    "baseline": (cmd_baseline, _baseline),
    "undo": (cmd_undo, _undo),
    "repair": (cmd_repair, lambda sub: _add(sub, *_DATABASE)),
    "exec": (cmd_exec, lambda sub: _add(sub, _database_options, _exec_options)),
    "run": (cmd_run, _run),
    "wait": (cmd_wait, _wait),
    "status": (cmd_status, _status),
}

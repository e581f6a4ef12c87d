"""The `lockgate` command line: the runner's commands (and, later, the operator's)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

from . import __version__, redaction
from .database import Database, create_engine
from .errors import ClusterError, LockgateError, UsageError, ValidationRefused
from .history import derive_state
from .lint import ERROR, lint_scripts
from .planner import inventory
from .runner import Options, Runner
from .scripts import Phase, load_scripts
from .summary import Summary
from .versions import Version

DEFAULT_HISTORY_TABLE = "lockgate_schema_history"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Output(json_mode=getattr(args, "json", False))
    try:
        return args.handler(args, out)
    except LockgateError as exc:
        summary = Summary(args.command)
        summary.fail(exc)
        return out.finish(summary)
    except KeyboardInterrupt:
        out.error("interrupted")
        return 130


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
            Path(summary_file).write_text(redaction.redact(summary.compact()))
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


# argument handling


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lockgate", description="Exactly-once, rollout-gated schema migrations.")
    parser.add_argument("--version", action="version", version=f"lockgate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _runner_commands(commands)
    _cluster_commands(commands)
    return parser


def _runner_commands(commands: argparse._SubParsersAction) -> None:
    database, scripts = (_database_options, _json_option), (_dir_option,)
    migrate = _subcommand(commands, "migrate", cmd_migrate, "apply pending migrations of one phase")
    _add(migrate, *database, *scripts, _phase_options, _execution_options)
    migrate.add_argument(
        "--single-transaction", action="store_true", help="all pending migrations in one transaction: all or nothing"
    )
    _add(
        _subcommand(commands, "plan", cmd_plan, "show what migrate would do, changing nothing"),
        *database,
        *scripts,
        _phase_options,
    )
    _add(_subcommand(commands, "info", cmd_info, "list applied and pending migrations per phase"), *database, *scripts)
    _add(_subcommand(commands, "lint", cmd_lint, "check scripts against phase-aware rules"), _json_option, *scripts)
    baseline = _subcommand(commands, "baseline", cmd_baseline, "mark an existing schema as being at VERSION")
    _add(baseline, *database)
    baseline.add_argument(
        "--version", dest="baseline_version", required=True, type=_version, help="the schema's version"
    )
    undo = _subcommand(commands, "undo", cmd_undo, "run U scripts to take expand back to VERSION")
    _add(undo, *database, *scripts, _execution_options)
    undo.add_argument("--to", required=True, type=_version, help="the version to return to")
    repair = _subcommand(commands, "repair", cmd_repair, "remove failed history rows after fixing the database by hand")
    _add(repair, *database)


def _cluster_commands(commands: argparse._SubParsersAction) -> None:
    run = _subcommand(commands, "run", cmd_run, "run the SchemaMigration operator against the current cluster")
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
    run.add_argument("--verbose", action="store_true", help="also kopf's per-handler logs")
    wait = _subcommand(commands, "wait", cmd_wait, "block until a SchemaMigration expanded a version (init container)")
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
    status = _subcommand(commands, "status", cmd_status, "show versions, phase, gated workloads, waiting pods, Jobs")
    status.add_argument("name", nargs="?", help="one SchemaMigration (default: all)")
    status.add_argument("-n", "--namespace", help="namespace (default: all namespaces, or 'default' with NAME)")
    _json_option(status)


def _subcommand(
    commands: argparse._SubParsersAction, name: str, handler: Callable[[argparse.Namespace, Output], int], text: str
) -> argparse.ArgumentParser:
    sub = commands.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
    sub.set_defaults(handler=handler, json=False)
    return sub


def _add(sub: argparse.ArgumentParser, *groups: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    for group in groups:
        group(sub)
    return sub


def _json_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--json", action="store_true", help="print one JSON document")


def _dir_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--dir", help="migrations directory (default: $LOCKGATE_MIGRATIONS_DIR)")


def _database_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--database-url", help="default: $LOCKGATE_DATABASE_URL (prefer it: arguments show in ps)")
    sub.add_argument(
        "--history-table",
        default=os.environ.get("LOCKGATE_HISTORY_TABLE", DEFAULT_HISTORY_TABLE),
        help=f"[schema.]table (default: $LOCKGATE_HISTORY_TABLE, else {DEFAULT_HISTORY_TABLE})",
    )


def _phase_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--phase", choices=[p.value for p in Phase], default=Phase.EXPAND.value)
    sub.add_argument("--target", type=_version, help="apply versions up to and including this one")
    sub.add_argument("--out-of-order", action="store_true", help="allow pending versions older than applied ones")


def _execution_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--summary-file",
        default=os.environ.get("LOCKGATE_SUMMARY_FILE"),
        help="write a compact JSON summary here, e.g. /dev/termination-log (default: $LOCKGATE_SUMMARY_FILE)",
    )
    seconds, count = _non_negative(float), _non_negative(int)
    sub.add_argument(
        "--lock-wait", type=seconds, default=300.0, metavar="SECONDS", help="wait for another runner (300)"
    )
    sub.add_argument("--lock-timeout", type=count, default=3000, metavar="MS", help="lock_timeout per statement (3000)")
    sub.add_argument("--lock-retries", type=count, default=5, metavar="N", help="retries after a lock timeout (5)")
    sub.add_argument(
        "--statement-timeout", type=seconds, default=0.0, metavar="SECONDS", help="per statement (0: none)"
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


def _options(args: argparse.Namespace) -> Options:
    return Options(
        phase=Phase(getattr(args, "phase", Phase.EXPAND.value)),
        target=getattr(args, "target", None),
        single_transaction=getattr(args, "single_transaction", False),
        lock_wait=getattr(args, "lock_wait", 300.0),
        lock_timeout_ms=getattr(args, "lock_timeout", 3000),
        lock_retries=getattr(args, "lock_retries", 5),
        statement_timeout=getattr(args, "statement_timeout", 0.0),
        out_of_order=getattr(args, "out_of_order", False),
    )


def _database(args: argparse.Namespace) -> Database:
    url = args.database_url or os.environ.get("LOCKGATE_DATABASE_URL")
    if not url:
        raise UsageError("no database URL: pass --database-url or set LOCKGATE_DATABASE_URL")
    return Database(create_engine(url), args.history_table)


def _scripts_dir(args: argparse.Namespace) -> str:
    directory = args.dir or os.environ.get("LOCKGATE_MIGRATIONS_DIR")
    if not directory:
        raise UsageError("no migrations directory: pass --dir or set LOCKGATE_MIGRATIONS_DIR")
    return directory


def _runner(args: argparse.Namespace, out: Output, needs_dir: bool = True) -> Runner:
    scripts = load_scripts(_scripts_dir(args)) if needs_dir else []
    return Runner(_database(args), scripts, _options(args), out.progress)


# commands


def cmd_migrate(args: argparse.Namespace, out: Output) -> int:
    summary_file = args.summary_file
    try:
        runner = _runner(args, out)
    except LockgateError as exc:
        summary = Summary("migrate", args.phase, str(args.target) if args.target else None)
        summary.fail(exc)
        return out.finish(summary, summary_file)
    target = f" up to {args.target}" if args.target else ""
    out.progress(f"lockgate {args.phase}{target}: {len(runner.scripts)} script(s) in {_scripts_dir(args)}")
    try:
        return out.finish(runner.migrate(), summary_file)
    finally:
        runner.db.close()


def cmd_plan(args: argparse.Namespace, out: Output) -> int:
    return _run_command(args, out, Runner.plan)


def cmd_undo(args: argparse.Namespace, out: Output) -> int:
    return _run_command(args, out, lambda runner: runner.undo(args.to), summary_file=args.summary_file)


def cmd_baseline(args: argparse.Namespace, out: Output) -> int:
    return _run_command(args, out, lambda runner: runner.baseline(args.baseline_version), needs_dir=False)


def cmd_repair(args: argparse.Namespace, out: Output) -> int:
    return _run_command(args, out, Runner.repair, needs_dir=False)


def _run_command(
    args: argparse.Namespace,
    out: Output,
    command: Callable[[Runner], Summary],
    needs_dir: bool = True,
    summary_file: str | None = None,
) -> int:
    runner = _runner(args, out, needs_dir)
    try:
        return out.finish(command(runner), summary_file)
    finally:
        runner.db.close()


def cmd_info(args: argparse.Namespace, out: Output) -> int:
    scripts = load_scripts(_scripts_dir(args))
    db = _database(args)
    try:
        listing = inventory(scripts, derive_state(db.read_history()))
    finally:
        db.close()
    if args.json:
        out.document(listing)
        return 0
    for phase, entries in listing.items():
        out.progress(phase)
        for entry in entries:
            when = (
                f"  {entry['installed_on']} by {entry['installed_by']} ({entry['ms']} ms)"
                if entry["installed_on"]
                else ""
            )
            out.progress(f"  {entry['script']:<44} {entry['state']}{when}")
        if not entries:
            out.progress("  (none)")
    return 0


def cmd_run(args: argparse.Namespace, out: Output) -> int:
    from .controller.run import run_operator

    return run_operator(args.namespace, args.health_port, args.metrics_port, args.log_format, args.verbose)


def cmd_wait(args: argparse.Namespace, out: Output) -> int:
    from .wait import wait_for_schema

    if not args.name or args.required is None:
        raise UsageError(
            "lockgate wait needs --name and --version (or LOCKGATE_SCHEMAMIGRATION and LOCKGATE_REQUIRES_VERSION)"
        )
    with _api_errors():
        return wait_for_schema(args.namespace, args.name, args.required, args.timeout, out.progress)


def cmd_status(args: argparse.Namespace, out: Output) -> int:
    from .status import list_migrations, render

    with _api_errors():
        migrations = list_migrations(args.namespace, args.name)
    if args.json:
        out.document(
            [
                {
                    "metadata": {"namespace": m["metadata"]["namespace"], "name": m["metadata"]["name"]},
                    "spec": m.get("spec"),
                    "status": m.get("status"),
                }
                for m in migrations
            ]
        )
        return 0
    for body in migrations:
        for line in render(body):
            out.progress(line)
    if not migrations:
        out.progress("no SchemaMigrations found")
    return 0


@contextlib.contextmanager
def _api_errors() -> Iterator[None]:
    """Kubernetes API failures as one line that says what went wrong, not a traceback."""
    from kubernetes.client.rest import ApiException

    from .controller.reconciler import describe

    try:
        yield
    except ApiException as exc:
        raise ClusterError(f"the Kubernetes API refused: {describe(exc)}") from None


def cmd_lint(args: argparse.Namespace, out: Output) -> int:
    findings = lint_scripts(load_scripts(_scripts_dir(args)))
    errors = [f for f in findings if f.severity == ERROR]
    if args.json:
        out.document(
            {"findings": [vars(f) for f in findings], "errors": len(errors), "warnings": len(findings) - len(errors)}
        )
    else:
        for f in findings:
            out.progress(f"{f.script}:{f.line or '?'}: {f.severity}: [{f.rule}] {f.message}")
        out.progress(f"{len(errors)} error(s), {len(findings) - len(errors)} warning(s)")
    return ValidationRefused.exit_code if errors else 0


if __name__ == "__main__":
    sys.exit(main())

"""The `lockgate` commands: each turns its arguments into a runner or cluster call and prints the outcome.

Each command imports the runner or cluster modules it uses when it runs, not here: `lockgate exec`
and `wait` run in every app pod's start-up, and SQLAlchemy, the SQL parser and the Kubernetes
client each take a noticeable part of a second to load (tests/unit/test_lazy_imports.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import TYPE_CHECKING

from ..runner.options import Limits, Options
from ..shared.errors import ClusterError, LockgateError, Paused, UsageError, ValidationRefused
from ..shared.phases import EXEC
from .output import Output, write_report

if TYPE_CHECKING:
    from ..runner import targets
    from ..runner.database import Database
    from ..runner.execute import Runner
    from ..runner.scripts import Script
    from ..runner.summary import Summary


def options_from(args: argparse.Namespace) -> Options:
    """The options this command takes, as given; Options holds the defaults."""
    limits = Limits(**{f.name: getattr(args, f.name) for f in fields(Limits) if hasattr(args, f.name)})
    return Options(**{f.name: getattr(args, f.name) for f in fields(Options) if hasattr(args, f.name)}, limits=limits)


def _targets(args: argparse.Namespace) -> tuple[targets.Target, ...]:
    """This pod's targets in a fan-out Job (LOCKGATE_TARGETS..., or the schemas its schemaQuery
    lists), none elsewhere."""
    from ..runner import targets
    from ..shared.targets import FIRST_INDEX_ENV, INDEX_ENV, INDEXES_ENV, KIND_ENV, NAMES_ENV, PER_POD_ENV, QUERY_ENV

    env = os.environ.get
    if sql := env(QUERY_ENV):
        from ..runner.schema_query import listed_schemas

        url = getattr(args, "database_url", None) or env("LOCKGATE_DATABASE_URL")
        if not url:
            raise UsageError("no database URL for the schemaQuery: set LOCKGATE_DATABASE_URL")
        return targets.pick_listed(listed_schemas(url, sql), env(INDEX_ENV), env(INDEXES_ENV), env(FIRST_INDEX_ENV))
    return targets.pick(env(KIND_ENV), env(NAMES_ENV), env(INDEX_ENV), env(PER_POD_ENV))


def _listed() -> bool:
    """A pod of a schemaQuery's Job: its targets are whatever its shard of the query's rows holds."""
    from ..shared.targets import QUERY_ENV

    return bool(os.environ.get(QUERY_ENV))


def _database(args: argparse.Namespace, target: targets.Target | None) -> Database:
    from ..runner import targets
    from ..runner.connection import parse_url
    from ..runner.database import Database
    from ..shared.targets import SCHEMA

    url, schema = args.database_url or os.environ.get("LOCKGATE_DATABASE_URL"), args.schema
    if target and target.kind == SCHEMA:
        schema = target.name
    elif target:
        url = _target_url(target)
    if not url:
        raise UsageError("no database URL: pass --database-url or set LOCKGATE_DATABASE_URL")
    table = targets.schema_history_table(schema, args.history_table) if schema else args.history_table
    return Database(parse_url(url), table, schema)


def _one_target(args: argparse.Namespace) -> targets.Target | None:
    if _listed():
        raise UsageError(
            "this pod's targets are the schemas a schemaQuery lists, any number of them: a command other "
            "than lockgate migrate or undo takes one target; list the schemas in spec.targets.schemas"
        )
    chunk = _targets(args)
    if len(chunk) > 1:
        raise UsageError(
            f"this pod has {len(chunk)} targets (LOCKGATE_TARGETS_PER_POD): a command other than "
            "lockgate migrate or undo takes one per pod; set spec.targets.perPod to 1"
        )
    return chunk[0] if chunk else None


def _target_url(target: targets.Target) -> str:
    """A database target's URL, from the file the Job mounts for its Secret (optional there: a
    missing Secret fails this target only)."""
    from ..shared.targets import SECRETS_DIR

    path = os.path.join(os.environ.get("LOCKGATE_TARGET_SECRETS_DIR", SECRETS_DIR), target.name)
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().strip()
    except FileNotFoundError:
        raise UsageError(
            f"{target.describe()}: the Secret {target.name} or its URL key does not exist; "
            "create it, then retry (the lockgate.dev/retry annotation)"
        ) from None
    except OSError as exc:
        raise UsageError(f"{target.describe()}: cannot read its URL from {path}: {exc.strerror}") from None


def _scripts_dir(args: argparse.Namespace) -> str:
    directory = args.dir or os.environ.get("LOCKGATE_MIGRATIONS_DIR")
    if not directory:
        raise UsageError("no migrations directory: pass --dir or set LOCKGATE_MIGRATIONS_DIR")
    return directory


def _scripts(args: argparse.Namespace) -> list[Script]:
    from ..runner.scripts import load_scripts

    return load_scripts(_scripts_dir(args), args.encoding)


def _runner(
    args: argparse.Namespace, out: Output, needs_dir: bool = True, target: targets.Target | None = None
) -> Runner:
    from ..runner.execute import Runner

    scripts = _scripts(args) if needs_dir else []
    return Runner(_database(args, target), scripts, options_from(args), out.progress)


def cmd_migrate(args: argparse.Namespace, out: Output) -> int:
    def announce(runner: Runner) -> None:
        target = f" up to {args.target}" if args.target else ""
        target += f" in schema {runner.db.search_schema}" if runner.db.search_schema else ""
        out.progress(f"lockgate {args.phase}{target}: {len(runner.scripts)} script(s) in {_scripts_dir(args)}")

    return _run_command(args, out, lambda runner: runner.migrate(), announce=announce)


def cmd_plan(args: argparse.Namespace, out: Output) -> int:
    return _run_command(args, out, lambda runner: runner.plan())


def cmd_undo(args: argparse.Namespace, out: Output) -> int:
    return _run_command(args, out, lambda runner: runner.undo(args.to))


def cmd_baseline(args: argparse.Namespace, out: Output) -> int:
    return _run_command(args, out, lambda runner: runner.baseline(args.baseline_version), needs_dir=False)


def cmd_repair(args: argparse.Namespace, out: Output) -> int:
    return _run_command(args, out, lambda runner: runner.repair(), needs_dir=False)


def _run_command(
    args: argparse.Namespace,
    out: Output,
    command: Callable[[Runner], Summary],
    needs_dir: bool = True,
    announce: Callable[[Runner], None] | None = None,
) -> int:
    """Run one runner command, on each of this pod's targets in turn in a fan-out Job. Commands with
    --summary-file (migrate, undo) write it on every path, a failure to load the scripts or reach
    the database included: the operator reads it."""
    summary_file: str | None = getattr(args, "summary_file", None)
    try:
        chunk = _targets(args)
    except LockgateError as exc:
        return out.finish(_failed_before_start(args, exc), summary_file)

    def run(target: targets.Target | None) -> Summary:
        return _summary(args, out, command, needs_dir, announce, target)

    if _listed():  # a schemaQuery's pod reports how many schemas it covered, none included
        return out.finish(_run_chunk(out, run, chunk, summary_file) if chunk else _no_targets(args), summary_file)
    return out.finish(
        run(chunk[0] if chunk else None) if len(chunk) <= 1 else _run_chunk(out, run, chunk, summary_file),
        summary_file,
    )


def _run_chunk(
    out: Output, run: Callable[[targets.Target], Summary], chunk: tuple[targets.Target, ...], summary_file: str | None
) -> Summary:
    """Each target in turn, past a failing one: every target gets its run, and the pod's report
    names each that failed. The report is rewritten after each target, so a pod killed mid-chunk
    (SIGKILL, OOM) still reports the targets it finished. A pause (SIGTERM) stops here: the pod is
    going away."""
    from ..runner.summary import chunk_summary

    results = []
    for target in chunk:
        out.progress(f"{target.describe()}:")
        summary = run(target)
        if not out.json_mode:
            out.finish(summary)
        results.append((target.name, summary))
        if summary.exit_code == Paused.exit_code:
            break
        if summary_file and len(results) < len(chunk):
            write_report(summary_file, chunk_summary(results, len(chunk)).compact())
    return chunk_summary(results, len(chunk))


def _summary(
    args: argparse.Namespace,
    out: Output,
    command: Callable[[Runner], Summary],
    needs_dir: bool,
    announce: Callable[[Runner], None] | None,
    target: targets.Target | None,
) -> Summary:
    try:
        runner = _runner(args, out, needs_dir, target)
    except Exception as exc:
        from ..runner.database import unexpected

        error = exc if isinstance(exc, LockgateError) else unexpected(exc)
        if not hasattr(args, "summary_file"):
            raise error from None
        return _failed_before_start(args, error)
    if announce:
        announce(runner)
    try:
        return command(runner)
    finally:
        runner.db.close()


def _failed_before_start(args: argparse.Namespace, exc: LockgateError) -> Summary:
    summary = _started(args)
    summary.fail(exc)
    return summary


def _started(args: argparse.Namespace) -> Summary:
    from ..runner.summary import Summary

    options = options_from(args)
    target = getattr(args, "to", None) or options.target
    return Summary(args.command, options.phase, str(target) if target else None)


def _no_targets(args: argparse.Namespace) -> Summary:
    """A schemaQuery's index whose shard lists no schema (yet): done, with nothing to do."""
    summary = _started(args)
    summary.failed_count, summary.target_count = 0, 0
    summary.notes.append("none of the schemas the schemaQuery lists falls to this index")
    return summary


def cmd_exec(args: argparse.Namespace, out: Output) -> int:
    """Everything lockgate says goes to stderr: stdout is the command's own."""
    from ..runner.exec_command import exec_command
    from ..runner.summary import Summary

    out = Output(json_mode=False, stdout=out.stderr)
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    try:
        if not argv:
            raise UsageError("lockgate exec needs a command: lockgate exec [OPTIONS] -- COMMAND [ARGS...]")
        db = _database(args, _one_target(args))
    except LockgateError as exc:
        summary = Summary("exec", EXEC, args.version_label)
        summary.fail(exc)
        return out.finish(summary, args.summary_file)
    try:
        return out.finish(exec_command(db, argv, args.version_label, args.lock_wait, out.progress), args.summary_file)
    finally:
        db.close()


def cmd_info(args: argparse.Namespace, out: Output) -> int:
    runner = _runner(args, out, target=_one_target(args))
    try:
        listing = runner.info()
    finally:
        runner.db.close()
    if args.json:
        out.document(listing.document())
        return 0
    for section, entries in listing.sections().items():
        out.progress(section)
        for entry in entries:
            when = f"  {entry.installed_on} by {entry.installed_by} ({entry.ms} ms)" if entry.installed_on else ""
            out.progress(f"  {entry.script:<44} {entry.state}{when}")
            if entry.walk:
                out.progress(f"    batched: {entry.walk}")
        if not entries:
            out.progress("  (none)")
    return 0


def cmd_run(args: argparse.Namespace, out: Output) -> int:
    from ..controller.run import run_operator

    return run_operator(
        args.namespace, args.health_port, args.metrics_port, args.log_format, args.verbose, args.pod_security
    )


def cmd_wait(args: argparse.Namespace, out: Output) -> int:
    from .wait import wait_for_schema

    if not args.name or args.required is None:
        raise UsageError(
            "lockgate wait needs --name and --version (or LOCKGATE_SCHEMAMIGRATION and LOCKGATE_REQUIRES_VERSION)"
        )
    with _api_errors():
        return wait_for_schema(args.namespace, args.name, args.required, args.timeout, out.progress)


def cmd_status(args: argparse.Namespace, out: Output) -> int:
    from .status_view import list_migrations, render

    if args.targets:
        return _status_targets(args, out)
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


def _status_targets(args: argparse.Namespace, out: Output) -> int:
    from datetime import datetime, timezone

    from .status_view import list_migrations
    from .targets_view import document, read_phase_jobs, table

    if not args.name:
        raise UsageError("lockgate status --targets needs the SchemaMigration's name: lockgate status NAME --targets")
    with _api_errors():
        [body] = list_migrations(args.namespace, args.name)
        phase_jobs = read_phase_jobs(body)
    now = datetime.now(timezone.utc)
    if args.json:
        out.document(document(phase_jobs, now))
    else:
        for line in table(phase_jobs, now):
            out.progress(line)
    return 0


@contextlib.contextmanager
def _api_errors() -> Iterator[None]:
    """Kubernetes API failures as one line that says what went wrong, not a traceback."""
    from kubernetes.client.exceptions import ApiException

    from ..controller.kube_client import describe_error

    try:
        yield
    except ApiException as exc:
        raise ClusterError(f"the Kubernetes API refused: {describe_error(exc)}") from None


def cmd_lint(args: argparse.Namespace, out: Output) -> int:
    from ..runner.lint import ERROR, lint_scripts

    findings = lint_scripts(_scripts(args))
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

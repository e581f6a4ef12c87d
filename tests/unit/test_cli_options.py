"""The CLI fills runner.options.Options by name: each flag's `dest` is a field's name. A field or
a dest renamed alone would make its flag silently fall back to the default; this pins them."""

from __future__ import annotations

from dataclasses import fields

from lockgate.cli.commands import options_from
from lockgate.cli.parser import build_parser
from lockgate.runner.options import Limits, Options
from lockgate.shared.phases import Phase
from lockgate.shared.versions import Version

EVERY_FLAG = [
    "migrate",
    *("--phase", "contract", "--target", "7.1", "--single-transaction", "--out-of-order"),
    *("--lock-wait", "9", "--lock-timeout", "250", "--lock-retries", "2", "--statement-timeout", "30"),
    *("--progress-file", "/run/progress.json"),
    *("--max-replication-lag", "2.5", "--max-replication-lag-bytes", "off", "--no-wait-on-vacuum"),
    *("--max-lock-waiters", "3"),
]


def test_every_migrate_flag_arrives_in_its_options_field() -> None:
    options = options_from(build_parser().parse_args(EVERY_FLAG))
    assert options == Options(
        Phase.CONTRACT,
        Version.parse("7.1"),
        True,
        9.0,
        250,
        2,
        30.0,
        True,
        "/run/progress.json",
        Limits(2.5, None, False, 3),
    )


def test_no_field_is_left_at_its_default() -> None:
    """A field added to Options or Limits without a flag (or with a mismatched dest) shows up here."""
    options, defaults = options_from(build_parser().parse_args(EVERY_FLAG)), Options()
    assert [f.name for f in fields(Options) if getattr(options, f.name) == getattr(defaults, f.name)] == []
    assert [f.name for f in fields(Limits) if getattr(options.limits, f.name) == getattr(Limits(), f.name)] == []


def test_without_flags_options_are_the_defaults() -> None:
    assert options_from(build_parser().parse_args(["migrate"])) == Options()

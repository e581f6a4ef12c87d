"""The `lockgate` argument parser: every command listed, only the one being run built.

Building the arguments of all eleven commands imports their handlers, defaults and types
(cli/arguments.py, runner.options, dataclasses): `lockgate --version` would pay for all of it,
and every command for the ten it does not run (benchmarks/startup.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .. import __version__

# name -> help, in the order `lockgate --help` lists them
COMMANDS = {
    "migrate": "apply pending migrations of one phase",
    "plan": "show what migrate would do, changing nothing",
    "info": "list applied and pending migrations per phase",
    "lint": "check scripts against phase-aware rules",
    "baseline": "mark an existing schema as being at VERSION",
    "undo": "run U scripts to take expand back to VERSION",
    "repair": "remove failed history rows after fixing the database by hand",
    "exec": "run another tool while holding the migration lock, audited",
    "run": "run the SchemaMigration operator against the current cluster",
    "wait": "block until a SchemaMigration expanded a version (init container)",
    "status": "show versions, phase, gated workloads, waiting pods, Jobs",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with the arguments of `command` (of every command when None; of none when it
    names no command, as for `lockgate --version` or `--help`)."""
    parser = argparse.ArgumentParser(prog="lockgate", description="Exactly-once, rollout-gated schema migrations.")
    parser.add_argument("--version", action="version", version=f"lockgate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    subs = {
        name: commands.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        for name, text in COMMANDS.items()
    }
    built = list(COMMANDS) if command is None else [command] if command in COMMANDS else []
    if built:
        from . import arguments

        for name in built:
            arguments.build(name, subs[name])
    return parser


def command_of(argv: Sequence[str]) -> str:
    """The command an argument list runs: its first word that is not an option ("" if none)."""
    return next((arg for arg in argv if not arg.startswith("-")), "")

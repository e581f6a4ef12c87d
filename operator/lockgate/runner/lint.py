"""Phase-aware checks of PostgreSQL migration scripts (pure).

Expand and background run while old pods still serve, so they must stay additive;
contract runs after the rollout, when removing things is safe. A file may silence a rule
with a comment line such as `-- lockgate:allow blocking-index`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType

from ..shared.phases import UNDO, Phase
from .scripts import KIND_PHASE, Kind, Script
from .statements import ScriptRefused, ScriptSyntaxError, Statement, split_postgres

ERROR, WARNING = "error", "warning"
VOLATILE_FUNCTIONS = {
    "random",
    "clock_timestamp",
    "timeofday",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v4",
    "nextval",
    "txid_current",
    "statement_timestamp",
}
_ALLOW = re.compile(r"--\s*lockgate:allow\s+([\w\s,-]+)")


@dataclass(frozen=True)
class Finding:
    script: str
    line: int | None
    severity: str
    rule: str
    message: str


def lint_scripts(scripts: list[Script]) -> list[Finding]:
    return [finding for script in sorted(scripts, key=lambda s: s.name) for finding in lint_script(script)]


def lint_script(script: Script) -> list[Finding]:
    allowed = {
        rule.strip() for match in _ALLOW.finditer(script.sql) for rule in re.split(r"[\s,]+", match[1]) if rule.strip()
    }
    try:
        statements = split_postgres(script.sql)
    except ScriptSyntaxError as exc:
        return [Finding(script.name, exc.line, ERROR, "syntax", exc.message)]
    except ScriptRefused as exc:
        return [Finding(script.name, exc.line, ERROR, exc.rule, exc.reason)]
    phase = _phase(script.kind)
    created = {_name(s.node.relation) for s in statements if isinstance(s.node, ast.CreateStmt)}
    findings = [
        Finding(script.name, statement.line, severity, rule, message)
        for statement in statements
        for severity, rule, message in _check(statement.node, phase, created)
    ]
    findings += _mixed_transactions(script, statements)
    return [f for f in findings if f.rule not in allowed]


def _phase(kind: Kind) -> str:
    """The phase a script runs in: repeatable scripts run with expand."""
    if kind is Kind.UNDO:
        return UNDO
    return KIND_PHASE.get(kind, Phase.EXPAND).value


def _check(node: Any, phase: str, created: set[str]) -> Iterator[tuple[str, str, str]]:
    """Yield (severity, rule, message) for one statement."""
    additive_only = phase != UNDO and Phase(phase).additive
    if additive_only and _is_destructive(node):
        yield (
            ERROR,
            f"drop-in-{phase}",
            f"{_verb(node)} in the {phase} phase breaks pods still running the old code: move it to a C (contract) migration",
        )
    if additive_only and isinstance(node, ast.RenameStmt):
        yield (
            ERROR,
            f"rename-in-{phase}",
            f"renaming in the {phase} phase breaks pods still running the old code: add the new name, copy, and drop the old one in contract",
        )
    if isinstance(node, ast.IndexStmt) and not node.concurrent and _name(node.relation) not in created:
        yield (
            WARNING,
            "blocking-index",
            "CREATE INDEX without CONCURRENTLY blocks writes to the table while it builds: use CREATE INDEX CONCURRENTLY IF NOT EXISTS in a migration of its own",
        )
    if isinstance(node, ast.IndexStmt) and node.concurrent and not node.if_not_exists:
        yield (
            WARNING,
            "concurrent-index-not-idempotent",
            "add IF NOT EXISTS: a concurrent build commits on its own, so a run interrupted just after it must be able to repeat it",
        )
    if isinstance(node, ast.AlterTableStmt) and _name(node.relation) not in created:
        for cmd in node.cmds or ():
            yield from _check_alter(cmd, phase)


def _check_alter(cmd: Any, phase: str) -> Iterator[tuple[str, str, str]]:
    subtype, definition = cmd.subtype, cmd.def_
    if subtype == AlterTableType.AT_AlterColumnType:
        yield (
            WARNING,
            "column-type-change",
            f"changing the type of {cmd.name} rewrites the table under an ACCESS EXCLUSIVE lock and may break old code: add a new column, backfill it in background, switch, drop the old one in contract",
        )
    if subtype == AlterTableType.AT_SetNotNull:
        yield (
            WARNING,
            "set-not-null",
            f"SET NOT NULL on {cmd.name} scans the whole table under an ACCESS EXCLUSIVE lock: add CHECK ({cmd.name} IS NOT NULL) NOT VALID, VALIDATE it in a later migration, then SET NOT NULL",
        )
    if subtype == AlterTableType.AT_AddColumn and isinstance(definition, ast.ColumnDef):
        yield from _check_new_column(definition, phase)
    if subtype == AlterTableType.AT_AddConstraint and isinstance(definition, ast.Constraint):
        yield from _check_new_constraint(definition)


def _check_new_column(column: Any, phase: str) -> Iterator[tuple[str, str, str]]:
    constraints = {c.contype: c for c in column.constraints or ()}
    default = constraints.get(ConstrType.CONSTR_DEFAULT)
    if ConstrType.CONSTR_NOTNULL in constraints and default is None and ConstrType.CONSTR_IDENTITY not in constraints:
        severity = ERROR if phase == Phase.EXPAND else WARNING
        yield (
            severity,
            "not-null-without-default",
            f"adding NOT NULL column {column.colname} without a DEFAULT fails on a non-empty table and breaks inserts from old code: give it a DEFAULT",
        )
    if default is not None and _calls_volatile(default.raw_expr):
        yield (
            WARNING,
            "volatile-default",
            f"the volatile DEFAULT of {column.colname} rewrites every row under an ACCESS EXCLUSIVE lock: add the column without it, set the default, and backfill in batches (an A migration)",
        )


def _check_new_constraint(constraint: Any) -> Iterator[tuple[str, str, str]]:
    if constraint.contype in (ConstrType.CONSTR_FOREIGN, ConstrType.CONSTR_CHECK) and not constraint.skip_validation:
        yield (
            WARNING,
            "constraint-not-valid",
            "adding a validated constraint scans the table while holding its lock: add it NOT VALID, then VALIDATE CONSTRAINT in a later migration",
        )
    if constraint.contype in (ConstrType.CONSTR_UNIQUE, ConstrType.CONSTR_PRIMARY) and not constraint.indexname:
        yield (
            WARNING,
            "constraint-builds-index",
            "adding a UNIQUE or PRIMARY KEY constraint builds its index under lock: CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT ... USING INDEX",
        )


def _mixed_transactions(script: Script, statements: list[Statement]) -> list[Finding]:
    outside = [s for s in statements if not s.transactional]
    if outside and len(statements) > 1:
        return [
            Finding(
                script.name,
                outside[0].line,
                WARNING,
                "mixed-transaction",
                "this script mixes statements that must run outside a transaction with others, so a failure can leave it half applied: give the outside statement a migration of its own",
            )
        ]
    return []


_DESTRUCTIVE_OBJECTS = {
    ObjectType.OBJECT_TABLE,
    ObjectType.OBJECT_VIEW,
    ObjectType.OBJECT_MATVIEW,
    ObjectType.OBJECT_SEQUENCE,
    ObjectType.OBJECT_TYPE,
    ObjectType.OBJECT_FUNCTION,
    ObjectType.OBJECT_SCHEMA,
    ObjectType.OBJECT_DOMAIN,
}


def _is_destructive(node: Any) -> bool:
    if isinstance(node, ast.DropStmt):
        return node.removeType in _DESTRUCTIVE_OBJECTS
    if isinstance(node, ast.TruncateStmt):
        return True
    if isinstance(node, ast.AlterTableStmt):
        return any(cmd.subtype == AlterTableType.AT_DropColumn for cmd in node.cmds or ())
    return False


def _verb(node: Any) -> str:
    if isinstance(node, ast.DropStmt):
        return f"DROP {getattr(node.removeType, 'name', '').removeprefix('OBJECT_')}"
    return "TRUNCATE" if isinstance(node, ast.TruncateStmt) else "DROP COLUMN"


def _calls_volatile(expr: Any) -> bool:
    """Whether an expression calls a known volatile function anywhere inside it."""
    if isinstance(expr, ast.FuncCall) and expr.funcname and expr.funcname[-1].sval in VOLATILE_FUNCTIONS:
        return True
    if isinstance(expr, ast.Node):
        return any(_calls_volatile(getattr(expr, slot, None)) for slot in getattr(expr, "__slots__", ()))
    if isinstance(expr, tuple | list):
        return any(_calls_volatile(item) for item in expr)
    return False


def _name(relation: Any) -> str:
    return f"{relation.schemaname}.{relation.relname}" if relation.schemaname else relation.relname

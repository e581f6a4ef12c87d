"""Phase-aware checks of PostgreSQL migration scripts (pure).

Expand and background run while old pods still serve, so they must stay additive;
contract runs after the rollout, when removing things is safe. A file may silence a rule
with a comment line such as `-- lockgate:allow blocking-index`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Set
from dataclasses import dataclass
from typing import Any

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, DropBehavior, ObjectType

from ..shared.phases import UNDO, Phase
from ..shared.versions import Version
from .batched import header
from .lint_objects import (
    Columns,
    ColumnType,
    Obj,
    Scope,
    absorb_columns,
    column_type,
    created,
    dropped,
    named,
    next_scope,
    relation,
    renamed,
)
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


Issue = tuple[str, str, str]  # (severity, rule, message) of one statement


@dataclass(frozen=True)
class Context:
    """What one statement is checked against: its phase and what the file did before (and does after) it."""

    phase: str
    scope: Scope  # what unqualified names mean here
    new: Set[Obj]  # created by earlier statements of this file: they take no traffic yet
    introduced: Set[Obj]  # names earlier statements created or renamed something to: old code never spells them
    made: Set[Obj]  # every name the file creates or renames something to, before or after this statement
    columns: Columns  # column types written by earlier scripts and statements

    @property
    def additive(self) -> bool:
        return self.phase != UNDO and Phase(self.phase).additive

    def old_code_knows(self, obj: Obj) -> bool:
        """Whether the running release may use this name: not one the file itself made up."""
        return obj not in self.introduced

    def is_new_table(self, rangevar: Any) -> bool:
        """Created earlier in this file, so nothing uses it yet."""
        return relation(rangevar, self.scope) in self.new


def lint_scripts(scripts: list[Script]) -> list[Finding]:
    """Lint each script knowing the column types that the scripts before it (in run order) wrote."""
    columns: Columns = {}
    forward = sorted((s for s in scripts if s.kind in KIND_PHASE), key=_run_order)
    findings = {script.name: _lint(script, columns) for script in forward}
    # Undo and repeatable scripts see the whole forward schema and leave it as it is.
    findings |= {s.name: _lint(s, copy.deepcopy(columns)) for s in scripts if s.kind not in KIND_PHASE}
    return [finding for name in sorted(findings) for finding in findings[name]]


def lint_script(script: Script) -> list[Finding]:
    """Lint one script on its own (nothing known of the tables it does not create)."""
    return _lint(script, {})


def _lint(script: Script, columns: Columns) -> list[Finding]:
    """The script's findings; `columns` is brought up to date with what it changes."""
    allowed = {
        rule.strip() for match in _ALLOW.finditer(script.sql) for rule in re.split(r"[\s,]+", match[1]) if rule.strip()
    }
    try:
        statements = split_postgres(header.parseable(script.sql))  # :start/:end of a batched script as $1/$2
    except ScriptSyntaxError as exc:
        return [Finding(script.name, exc.line, ERROR, "syntax", exc.message)]
    except ScriptRefused as exc:
        return [Finding(script.name, exc.line, ERROR, exc.rule, exc.reason)]
    findings = [
        Finding(script.name, statement.line, severity, rule, message)
        for statement, (severity, rule, message) in _walk(statements, _phase(script.kind), columns)
    ]
    findings += _mixed_transactions(script, statements)
    findings += [
        Finding(script.name, line, WARNING, "unbatched-write", advice)
        for line, advice in header.unbatched_writes(script, statements)
    ]
    return [f for f in findings if f.rule not in allowed]


def _run_order(script: Script) -> tuple[Version, int]:
    return script.number, tuple(Phase).index(KIND_PHASE[script.kind])


def _phase(kind: Kind) -> str:
    """The phase a script runs in: repeatable scripts run with expand."""
    if kind is Kind.UNDO:
        return UNDO
    return KIND_PHASE.get(kind, Phase.EXPAND).value


def _walk(statements: list[Statement], phase: str, columns: Columns) -> Iterator[tuple[Statement, Issue]]:
    """Check each statement in order, then record what it created, renamed and changed."""
    made = _made(statements)
    scope, new, introduced = Scope(), set[Obj](), set[Obj]()
    for statement in statements:
        node = statement.node
        context = Context(phase, scope, new, introduced, made, columns)
        for rule in RULES:
            yield from ((statement, issue) for issue in rule(node, context))
        moved = renamed(node, scope) if isinstance(node, ast.RenameStmt) else None
        new |= {*created(node, scope), *(moved[1:] if moved and moved[0] in new else ())}
        introduced |= set(named(node, scope))
        absorb_columns(columns, node, scope)
        scope = next_scope(node, scope)


def _made(statements: list[Statement]) -> set[Obj]:
    """Every name the file creates or renames something to: a dropped definition it makes again is replaced."""
    names: set[Obj] = set()
    scope = Scope()
    for statement in statements:
        node = statement.node
        names |= set(named(node, scope))
        scope = next_scope(node, scope)
    return names


def _drops(node: Any, context: Context) -> Iterator[Issue]:
    """Removing what old pods still use; dropping what the file itself created, or replacing a definition, is fine."""
    if not context.additive or not _is_destructive(node, context):
        return
    if isinstance(node, ast.DropStmt) and node.removeType in _REPLACEABLE:
        existing = [obj for obj in dropped(node, context.scope) if context.old_code_knows(obj)]
        if all(obj in context.made for obj in existing):
            yield from _cascade(node, existing)
            return
    yield (
        ERROR,
        f"drop-in-{context.phase}",
        f"{_verb(node)} in the {context.phase} phase breaks pods still running the old code: move it to a C (contract) migration",
    )


def _cascade(node: Any, replaced: list[Obj]) -> Iterator[Issue]:
    if node.behavior == DropBehavior.DROP_CASCADE:
        yield (
            WARNING,
            "drop-cascade",
            f"the file re-creates {', '.join(obj.name for obj in replaced)}, but CASCADE also drops whatever depends on it (views, triggers, defaults): make sure the file re-creates those too",
        )


def _renames(node: Any, context: Context) -> Iterator[Issue]:
    """Renaming what queries name (tables, columns, views, types, functions) breaks old pods."""
    if not context.additive or not isinstance(node, ast.RenameStmt) or node.renameType in _INVISIBLE_RENAMES:
        return
    moved = renamed(node, context.scope)
    if node.relation is not None and context.is_new_table(node.relation):
        return
    if moved and (
        not context.old_code_knows(moved[0]) or (node.renameType in _REPLACEABLE and moved[0] in context.made)
    ):
        return
    yield (
        ERROR,
        f"rename-in-{context.phase}",
        f"renaming in the {context.phase} phase breaks pods still running the old code: add the new name, copy, and drop the old one in contract",
    )


def _index_builds(node: Any, context: Context) -> Iterator[Issue]:
    if not isinstance(node, ast.IndexStmt):
        return
    if not node.concurrent and not context.is_new_table(node.relation):
        yield (
            WARNING,
            "blocking-index",
            "CREATE INDEX without CONCURRENTLY blocks writes to the table while it builds: use CREATE INDEX CONCURRENTLY IF NOT EXISTS in a migration of its own",
        )
    if node.concurrent and not node.if_not_exists:
        yield (
            WARNING,
            "concurrent-index-not-idempotent",
            "add IF NOT EXISTS: a concurrent build commits on its own, so a run interrupted just after it must be able to repeat it",
        )


def _alter_table(node: Any, context: Context) -> Iterator[Issue]:
    """Locking hazards of ALTER TABLE on a table that takes traffic (not one this file created)."""
    if not isinstance(node, ast.AlterTableStmt) or context.is_new_table(node.relation):
        return
    known = context.columns.get(relation(node.relation, context.scope).name, {})
    for cmd in node.cmds or ():
        yield from _check_alter(cmd, context.phase, known)


# Each rule yields the issues of one statement; a new rule is a function added here.
RULES: tuple[Callable[[Any, Context], Iterator[Issue]], ...] = (_drops, _renames, _index_builds, _alter_table)


def _check_alter(cmd: Any, phase: str, known: dict[str, ColumnType]) -> Iterator[Issue]:
    subtype, definition = cmd.subtype, cmd.def_
    if subtype == AlterTableType.AT_AlterColumnType and not _keeps_storage(known.get(cmd.name), definition):
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


def _keeps_storage(old: ColumnType | None, definition: Any) -> bool:
    """Whether PostgreSQL changes the type without a rewrite: widening varchar, or varchar to text."""
    new = column_type(definition.typeName)
    if old is None or definition.raw_default is not None or definition.collClause is not None:
        return False  # unknown old type, a USING expression or a new collation: assume the rewrite
    texts = {"varchar", "text"}
    if old.array or new.array or old.name not in texts or new.name not in texts:
        return False
    return not new.mods or (old.name == "varchar" and bool(old.mods) and new.mods[0] >= old.mods[0])


def _check_new_column(column: Any, phase: str) -> Iterator[Issue]:
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


def _check_new_constraint(constraint: Any) -> Iterator[Issue]:
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


# Definitions that hold no data: dropping one and creating it again in the same file replaces it.
_REPLACEABLE = {
    ObjectType.OBJECT_VIEW,
    ObjectType.OBJECT_MATVIEW,
    ObjectType.OBJECT_FUNCTION,
    ObjectType.OBJECT_TYPE,
    ObjectType.OBJECT_DOMAIN,
}
# Names no application query spells, so renaming them breaks no running code.
_INVISIBLE_RENAMES = {
    ObjectType.OBJECT_INDEX,
    ObjectType.OBJECT_TABCONSTRAINT,
    ObjectType.OBJECT_DOMCONSTRAINT,
    ObjectType.OBJECT_TRIGGER,
    ObjectType.OBJECT_SEQUENCE,
    ObjectType.OBJECT_POLICY,
    ObjectType.OBJECT_RULE,
    ObjectType.OBJECT_STATISTIC_EXT,
    ObjectType.OBJECT_EVENT_TRIGGER,
}


def _is_destructive(node: Any, context: Context) -> bool:
    """Whether it removes something that existed before this file (what the file made is its own to drop)."""
    if isinstance(node, ast.DropStmt):
        objects = dropped(node, context.scope) if node.removeType in _DESTRUCTIVE_OBJECTS else ()
        return any(context.old_code_knows(obj) for obj in objects)
    if isinstance(node, ast.TruncateStmt):
        return any(not context.is_new_table(table) for table in node.relations or ())
    if isinstance(node, ast.AlterTableStmt) and not context.is_new_table(node.relation):
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

"""Which database objects a statement creates, drops or renames, by qualified name (pure).

Lint asks this to tell a new object (that no running code uses yet) from an existing one.
Names resolve the way the server resolves them: an unqualified name means a temporary
table the script made, else lands in the schema its `SET search_path` put first (`public`
by default); so `public.t` and `t` are one table, and `audit.t` another.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from pglast import ast
from pglast.enums import AlterTableType, ObjectType, VariableSetKind

DEFAULT_SCHEMA = "public"
RELATION, TYPE, FUNCTION, SCHEMA = "relation", "type", "function", "schema"

# The namespace each DROP/RENAME object type lives in (tables, views and sequences share
# pg_class, so one name cannot be two of them).
NAMESPACE = {
    ObjectType.OBJECT_TABLE: RELATION,
    ObjectType.OBJECT_VIEW: RELATION,
    ObjectType.OBJECT_MATVIEW: RELATION,
    ObjectType.OBJECT_SEQUENCE: RELATION,
    ObjectType.OBJECT_FOREIGN_TABLE: RELATION,
    ObjectType.OBJECT_TYPE: TYPE,
    ObjectType.OBJECT_DOMAIN: TYPE,
    ObjectType.OBJECT_FUNCTION: FUNCTION,
    ObjectType.OBJECT_PROCEDURE: FUNCTION,
    ObjectType.OBJECT_SCHEMA: SCHEMA,
}


class Obj(NamedTuple):
    """A database object: its namespace and schema-qualified name (a function's with its argument types)."""

    namespace: str
    name: str


class ColumnType(NamedTuple):
    """A column's type as written: `varchar(20)` is ("varchar", (20,), False)."""

    name: str
    mods: tuple[int, ...]
    array: bool


class Scope(NamedTuple):
    """What an unqualified name means at one point of a script."""

    schema: str = DEFAULT_SCHEMA  # the first schema of search_path
    temporary: frozenset[str] = frozenset()  # temporary tables the script made: they come first

    def qualify(self, schema: str | None, name: str, namespace: str = RELATION) -> str:
        if schema:
            return f"{schema}.{name}"
        temporary = namespace == RELATION and name in self.temporary
        return f"{'pg_temp' if temporary else self.schema}.{name}"


def next_scope(node: Any, scope: Scope) -> Scope:
    """The scope after this statement: a SET search_path or a new (or renamed) temporary table changes it."""
    if isinstance(node, ast.VariableSetStmt) and node.name == "search_path":
        return scope._replace(schema=_first_schema(node, scope.schema))
    names = [obj.name for obj in named(node, scope)]
    made = {name.removeprefix("pg_temp.") for name in names if name.startswith("pg_temp.")}
    return scope._replace(temporary=scope.temporary | made) if made else scope


def _first_schema(node: Any, current: str) -> str:
    if node.kind != VariableSetKind.VAR_SET_VALUE:
        return DEFAULT_SCHEMA  # RESET, SET ... TO DEFAULT
    schemas = [arg.val.sval for arg in node.args or () if isinstance(getattr(arg, "val", None), ast.String)]
    return next((s for s in schemas if s != "$user"), current)


def relation(rangevar: Any, scope: Scope) -> Obj:
    if rangevar.relpersistence == "t" and not rangevar.schemaname:
        return Obj(RELATION, f"pg_temp.{rangevar.relname}")
    return Obj(RELATION, scope.qualify(rangevar.schemaname, rangevar.relname))


def created(node: Any, scope: Scope) -> Iterator[Obj]:
    """The objects a CREATE statement makes."""
    match node:
        case ast.CreateStmt():
            yield relation(node.relation, scope)
        case ast.CreateTableAsStmt(into=ast.IntoClause() as into):
            yield relation(into.rel, scope)
        case ast.SelectStmt(intoClause=ast.IntoClause() as into):
            yield relation(into.rel, scope)
        case ast.ViewStmt():
            yield relation(node.view, scope)
        case ast.CreateSeqStmt():
            yield relation(node.sequence, scope)
        case ast.CompositeTypeStmt():
            yield Obj(TYPE, relation(node.typevar, scope).name)
        case ast.CreateEnumStmt() | ast.CreateRangeStmt():
            yield Obj(TYPE, _dotted(node.typeName, scope, TYPE))
        case ast.CreateDomainStmt():
            yield Obj(TYPE, _dotted(node.domainname, scope, TYPE))
        case ast.CreateFunctionStmt():
            yield from _function(node.funcname, _input_types(node.parameters), scope)
        case ast.CreateSchemaStmt(schemaname=str() as name):
            yield Obj(SCHEMA, name)


def named(node: Any, scope: Scope) -> list[Obj]:
    """Every name a statement gives: what it creates, and what it renames something to."""
    moved = renamed(node, scope) if isinstance(node, ast.RenameStmt) else None
    return [*created(node, scope), *(moved[1:] if moved else ())]


def dropped(node: Any, scope: Scope) -> Iterator[Obj]:
    """The objects a DROP statement names (a function dropped without arguments by its name alone)."""
    namespace = NAMESPACE.get(node.removeType)
    for item in node.objects or ():
        match namespace, item:
            case None, _:
                return
            case "function", ast.ObjectWithArgs():
                *_, most_specific = _function(item.objname, None if item.args_unspecified else item.objargs, scope)
                yield most_specific
            case "schema", ast.String():
                yield Obj(SCHEMA, str(item.sval))
            case _, ast.TypeName():
                yield Obj(TYPE, _dotted(item.names, scope, TYPE))
            case _:
                yield Obj(namespace, _dotted(item, scope))


def renamed(node: Any, scope: Scope) -> tuple[Obj, Obj] | None:
    """The (old, new) names of a RENAME of a whole object; None for columns, constraints and the like."""
    namespace = NAMESPACE.get(node.renameType)
    if namespace == RELATION:
        old = relation(node.relation, scope)
        return old, Obj(RELATION, f"{old.name.rsplit('.', 1)[0]}.{node.newname}")
    if namespace == TYPE:
        old = Obj(TYPE, _dotted(node.object, scope, TYPE))
        return old, Obj(TYPE, f"{old.name.rsplit('.', 1)[0]}.{node.newname}")
    return None


def column_type(type_name: Any) -> ColumnType:
    """The type as written (its integer modifiers only)."""
    integers = tuple(m.val.ival for m in type_name.typmods or () if isinstance(getattr(m, "val", None), ast.Integer))
    names = [n.sval for n in type_name.names]
    return ColumnType(".".join(names[1:] if names[0] == "pg_catalog" else names), integers, bool(type_name.arrayBounds))


def _dotted(names: Any, scope: Scope, namespace: str = RELATION) -> str:
    """A name given as String nodes, (name,) or (schema, name), qualified."""
    *schema, name = (n.sval for n in names)
    return scope.qualify(".".join(schema), name, namespace)


def _function(names: Any, argument_types: Any, scope: Scope) -> Iterator[Obj]:
    """A function by name alone and, where its arguments are known, by its signature too (overloads differ)."""
    name = _dotted(names, scope, FUNCTION)
    yield Obj(FUNCTION, name)
    if argument_types is not None:
        arguments = ",".join(_type_identity(t) for t in argument_types)
        yield Obj(FUNCTION, f"{name}({arguments})")


def _type_identity(type_name: Any) -> str:
    """A type as a function signature sees it: `varchar(10)` and `varchar` are one type."""
    written = column_type(type_name)
    return f"{written.name}{'[]' * written.array}"


def _input_types(parameters: Any) -> list[Any]:
    """The argument types that identify a function (OUT and TABLE parameters do not)."""
    return [p.argType for p in parameters or () if p.mode.value not in ("o", "t")]


Columns = dict[str, dict[str, ColumnType]]  # qualified table -> column -> its type as last written


def absorb_columns(columns: Columns, node: Any, scope: Scope) -> None:
    """Record in `columns` the column types a statement defines, changes or renames."""
    for obj in created(node, scope):
        if obj.namespace == RELATION:
            columns[obj.name] = {}  # a new relation: what a dropped one of that name had is gone
    match node:
        case ast.CreateStmt():
            for element in node.tableElts or ():
                _define(columns[relation(node.relation, scope).name], element)
        case ast.AlterTableStmt():
            table = columns.setdefault(relation(node.relation, scope).name, {})
            for cmd in node.cmds or ():
                _alter_column(table, cmd)
        case ast.RenameStmt(renameType=ObjectType.OBJECT_COLUMN, subname=str() as old, newname=str() as new):
            table = columns.get(relation(node.relation, scope).name, {})
            if (written := table.pop(old, None)) is not None:
                table[new] = written
        case ast.RenameStmt(renameType=ObjectType.OBJECT_TABLE):
            moved = renamed(node, scope)
            if moved and moved[0].name in columns:
                columns[moved[1].name] = columns.pop(moved[0].name)


def _define(table: dict[str, ColumnType], element: Any) -> None:
    if isinstance(element, ast.ColumnDef) and element.colname:
        table[element.colname] = column_type(element.typeName)


def _alter_column(table: dict[str, ColumnType], cmd: Any) -> None:
    if cmd.subtype == AlterTableType.AT_AddColumn:
        _define(table, cmd.def_)
    elif cmd.subtype == AlterTableType.AT_AlterColumnType:
        _define(table, ast.ColumnDef(colname=cmd.name, typeName=cmd.def_.typeName))

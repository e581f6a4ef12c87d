"""Batched background scripts: the header, the statement, and every decision of the walk (pure).

A background script declares `-- lockgate:batch table=T key=K size=N` before its one statement,
which uses `:start` and `:end`. walk.py walks K in half-open ranges [start, end), the last
one closed on the greatest key, and commits each batch with its progress row; what the next
range is, how big, how long to rest, where to resume and what the progress says are decided
here, without I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pglast
from pglast import ast
from pglast.enums import A_Expr_Kind, BoolExprType

from ...shared.progress import duration_text
from ..scripts import Kind, Script
from ..statements import ScriptSyntaxError, Statement, line_of, split_postgres

PROGRESS_TABLE = "lockgate_batch_progress"
DEFAULT_TARGET = 0.15  # seconds per batch: row locks held briefly, commit overhead still small
_HEADER = re.compile(r"^[ \t]*--[ \t]*lockgate:batch\b(?P<rest>[^\n]*)", re.M)
_IDENT = re.compile(r'^(?:[a-z_][a-z0-9_$]*|"[^"\s.]+")$', re.I)  # plain, or quoted to keep its case
_DURATION = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>ms|s)$")
_KEYS = ("table", "key", "size", "pause", "target", "max_rows_per_second")
_PLACEHOLDERS = {"START": "start", "END_P": "end"}  # the scanner's token names for :start and :end


class BatchScriptError(Exception):
    """A batched script's header or statement is unusable; the message names the line and the fix."""


@dataclass(frozen=True)
class Header:
    table: str
    key: str
    size: int
    pause: float = 0.0  # seconds between batches
    target: float = DEFAULT_TARGET  # seconds a batch should take
    max_rows_per_second: float | None = None
    line: int = 1

    @property
    def key_name(self) -> str:
        """The key column's name as the catalog spells it: quoted as written, else folded to lower case."""
        return self.key[1:-1] if self.key.startswith('"') else self.key.lower()

    @property
    def bounds(self) -> tuple[int, int]:
        """The range the adaptive batch size stays in."""
        return max(1, self.size // 10), self.size * 100


@dataclass(frozen=True)
class Batched:
    """A validated batched script: its header and its one statement."""

    header: Header
    statement: Statement


def is_batched(script: Script) -> bool:
    return script.kind is Kind.BACKGROUND and _HEADER.search(script.sql) is not None


def parse(script: Script) -> Batched:
    """Validate a batched script before anything runs; the error names file, line and fix."""
    try:
        header = parse_header(script.sql)
        return Batched(header, _one_statement(script.sql, header))
    except BatchScriptError as exc:
        raise BatchScriptError(f"{script.name} {exc}") from None


# the header


def parse_header(sql: str) -> Header:
    headers = list(_HEADER.finditer(sql))
    line = line_of(sql, headers[0].start())
    if len(headers) > 1:
        raise BatchScriptError(f"line {line_of(sql, headers[1].start())}: only one lockgate:batch header per script")
    values: dict[str, str] = {}
    for word in headers[0]["rest"].split():
        name, equals, value = word.partition("=")
        if name not in _KEYS or not equals or not value:
            raise BatchScriptError(
                f"line {line}: {word!r} in the batch header: use key=value with the keys {', '.join(_KEYS)}"
            )
        if name in values:
            raise BatchScriptError(f"line {line}: batch header key {name!r} given twice")
        values[name] = value
    missing = [k for k in _KEYS[:3] if k not in values]
    if missing:
        raise BatchScriptError(
            f"line {line}: the batch header needs {', '.join(k + '=' for k in missing)} "
            "(e.g. -- lockgate:batch table=customers key=id size=1000)"
        )
    return Header(
        table=_identifier(values["table"], "table", line, qualified=True),
        key=_identifier(values["key"], "key", line),
        size=_number(values["size"], "size", line, int, 1, 1_000_000),
        pause=_duration(values.get("pause", "0s"), "pause", line, 0.0),
        target=_duration(values.get("target", f"{DEFAULT_TARGET}s"), "target", line, 0.001),
        max_rows_per_second=(
            _number(values["max_rows_per_second"], "max_rows_per_second", line, float, 1, 1e9)
            if "max_rows_per_second" in values
            else None
        ),
        line=line,
    )


def _identifier(value: str, name: str, line: int, qualified: bool = False) -> str:
    parts = value.split(".", 1) if qualified else [value]
    if not all(_IDENT.match(part) for part in parts):
        form = "[schema.]table" if qualified else "a column name"
        raise BatchScriptError(
            f'line {line}: batch header {name}={value!r} is not {form} (identifiers, "Quoted" for mixed case)'
        )
    return value


def _number(value: str, name: str, line: int, kind: type[int] | type[float], low: float, high: float) -> Any:
    try:
        number = kind(value)
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise BatchScriptError(f"line {line}: batch header {name}={value!r} must be a number from {low:g} to {high:g}")
    return number


def _duration(value: str, name: str, line: int, low: float) -> float:
    match = _DURATION.match(value)
    seconds = float(match["n"]) / (1000 if match["unit"] == "ms" else 1) if match else None
    if seconds is None or not low <= seconds <= 3600:
        raise BatchScriptError(
            f"line {line}: batch header {name}={value!r} must be a duration such as 50ms or 2s (at most 1 hour)"
        )
    return seconds


# the statement


def placeholders(sql: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of each `:start` and `:end` in the SQL itself, never in a comment or string."""
    try:
        tokens = pglast.parser.scan(sql)
    except pglast.parser.ParseError as exc:
        raise ScriptSyntaxError(exc.args[0], None) from None
    found = []
    for colon, word in zip(tokens, tokens[1:], strict=False):
        if colon.name == "ASCII_58" and word.name in _PLACEHOLDERS and word.start == colon.end + 1:
            found.append((colon.start, word.end + 1, _PLACEHOLDERS[word.name]))
    return found


def substitute(sql: str, start: str, end: str, other: Callable[[str], str] | None = None) -> str:
    """The SQL with :start and :end replaced; `other(text)` rewrites the text between them."""
    out, position = [], 0
    for begin, finish, name in placeholders(sql):
        out += [other(sql[position:begin]) if other else sql[position:begin], start if name == "start" else end]
        position = finish
    out.append(other(sql[position:]) if other else sql[position:])
    return "".join(out)


def parseable(sql: str) -> str:
    """The script as PostgreSQL's parser accepts it: :start and :end as $1 and $2 (same lines)."""
    return substitute(sql, "$1", "$2")


def driver_sql(statement: Statement, last: bool = False) -> str:
    """The statement for psycopg, :start and :end as named parameters (a literal % doubled). For
    the last range `KEY < :end` becomes `KEY <= :end`, :end being the greatest key: a range closed
    on the maximum, which no computed value above it could hold (the maximum of a type, a uuid of
    all f's)."""
    sql = _closed(statement.sql) if last else statement.sql
    return substitute(sql, "%(start)s", "%(end)s", lambda text: text.replace("%", "%%"))


def _closed(sql: str) -> str:
    """`< :end` as `<= :end` and `:end >` as `:end >=` (parse() refused any other :end)."""
    for position in sorted(_end_comparisons(sql) or (), reverse=True):
        sql = sql[: position + 1] + "=" + sql[position + 1 :]
    return sql


def _end_comparisons(sql: str) -> list[int] | None:
    """Where the `<` before, or the `>` after, each :end is; None if an :end has neither."""
    tokens = pglast.parser.scan(sql)
    found = []
    for i, token in enumerate(tokens[:-1]):
        if token.name != "ASCII_58" or tokens[i + 1].name != "END_P" or tokens[i + 1].start != token.end + 1:
            continue
        if i > 0 and tokens[i - 1].name == "ASCII_60":
            found.append(tokens[i - 1].start)
        elif i + 2 < len(tokens) and tokens[i + 2].name == "ASCII_62":
            found.append(tokens[i + 2].start)
        else:
            return None
    return found


def _one_statement(sql: str, header: Header) -> Statement:
    statements = split_postgres(parseable(sql))
    if len(statements) != 1:
        raise BatchScriptError(
            f"line {header.line}: a batched script holds exactly one statement, this one has {len(statements)}: "
            "put the others in migrations of their own"
        )
    parsed = statements[0]
    if parsed.line < header.line:
        raise BatchScriptError(f"line {header.line}: put the lockgate:batch header before the statement")
    if not _is_batchable(parsed.node):
        raise BatchScriptError(
            f"line {parsed.line}: a batched statement must be an UPDATE, DELETE or INSERT ... SELECT"
        )
    if {name for _, _, name in placeholders(sql)} != {"start", "end"}:
        raise BatchScriptError(
            f"line {parsed.line}: the statement must use both :start and :end, e.g. "
            f"WHERE {header.key} >= :start AND {header.key} < :end"
        )
    if _end_comparisons(sql) is None:
        raise BatchScriptError(
            f"line {parsed.line}: use :end only as the range's upper bound, {header.key} < :end (the last "
            "range becomes <= the greatest key, so that it holds it)"
        )
    # The whole script is sent: its one statement and comments, positions as in the file.
    return replace(parsed, sql=sql, offset=0)


def _is_batchable(node: Any) -> bool:
    if isinstance(node, ast.UpdateStmt | ast.DeleteStmt):
        return True
    select = node.selectStmt if isinstance(node, ast.InsertStmt) else None
    return isinstance(select, ast.SelectStmt) and not select.valuesLists


# the walk


@dataclass(frozen=True)
class Walk:
    """A script's progress row: `last_key` is the exclusive end of the last committed range
    (as text; None before the first batch), so every key below it is done; once the walk is
    done, the greatest key, which the last range held."""

    script: str
    checksum: str
    size: int
    last_key: str | None = None
    rows: int = 0  # rows the statement changed
    scanned: int = 0  # keys walked
    batches: int = 0
    active_ms: int = 0  # time spent in batches, pauses and waits excluded
    total_estimate: int | None = None
    state: str = "running"  # running, waiting, paused, failed, done
    done: bool = False


def resume(saved: Walk | None, script: Script, header: Header, progress_table: str) -> Walk:
    """Where a walk starts: after the last committed batch of an unfinished walk of the same script,
    else at the beginning (also after an undo, which leaves a finished row behind)."""
    fresh = Walk(script.name, script.checksum, header.size)
    if saved is None or saved.done:
        return fresh
    if saved.checksum != script.checksum:
        raise BatchScriptError(
            f"{script.name} changed while its batched walk was in progress ({saved.batches} batches, "
            f"{saved.rows} rows done): restore the script as it was to resume, or start the walk over with "
            f"DELETE FROM {progress_table} WHERE script = '{script.name}'"
        )
    return replace(saved, state="running")


def after_batch(walk: Walk, scanned: int, rows: int, ms: int, end: str, last: bool, header: Header) -> Walk:
    """The progress row once a batch committed, with the size for the next one."""
    return replace(
        walk,
        last_key=end,
        rows=walk.rows + rows,
        scanned=walk.scanned + scanned,
        batches=walk.batches + 1,
        active_ms=walk.active_ms + ms,
        size=next_size(walk.size, ms, header),
        state="done" if last else "running",  # also after waiting under pressure
        done=last,
    )


def next_size(size: int, ms: int, header: Header) -> int:
    """Move the batch size toward the target duration: at most doubling or halving per batch, so
    one slow or fast outlier does not swing it, and within the header's bounds."""
    factor = min(2.0, max(0.5, header.target * 1000 / max(ms, 1)))
    low, high = header.bounds
    return max(low, min(high, round(size * factor)))


def rest_after(rows: int, ms: int, header: Header) -> float:
    """Seconds to sleep after a batch: the header's pause, or longer to hold max_rows_per_second."""
    if header.max_rows_per_second is None:
        return header.pause
    return max(header.pause, rows / header.max_rows_per_second - ms / 1000)


def wait_backoff(attempt: int) -> float:
    """Seconds to wait before re-checking database pressure: 1 s doubling to 30 s."""
    return float(min(30, 2**attempt))


def view(walk: Walk) -> dict[str, Any]:
    """What `info --json` and the progress file say about a walk."""
    rate = walk.rows / (walk.active_ms / 1000) if walk.active_ms else None
    key_rate = walk.scanned / (walk.active_ms / 1000) if walk.active_ms else None
    total = max(walk.total_estimate, walk.scanned) if walk.total_estimate else None
    remaining = 0.0 if walk.done else ((total - walk.scanned) / key_rate if total and key_rate else None)
    return {
        "script": walk.script,
        "state": walk.state,
        "rows": walk.rows,
        "keys": walk.scanned,
        "batches": walk.batches,
        "batch_size": walk.size,
        "rate_rows_per_s": round(rate, 1) if rate is not None else None,
        "total_keys_estimate": total,
        "percent": 100.0 if walk.done else (round(min(99.9, 100 * walk.scanned / total), 1) if total else None),
        "eta_s": round(remaining) if remaining is not None else None,
        "active_ms": walk.active_ms,
    }


def describe(walk: Walk) -> str:
    """One progress line."""
    return describe_view(view(walk))


def describe_view(v: dict[str, Any]) -> str:
    rate = f"{v['rate_rows_per_s']:,.0f} rows/s" if v["rate_rows_per_s"] is not None else "rate unknown"
    percent = f" ({v['percent']:g}%)" if v["percent"] is not None else ""
    eta = f", about {duration_text(v['eta_s'])} left" if v["eta_s"] else ""
    return (
        f"{v['batches']} batches, {v['rows']:,} rows{percent}, {rate}{eta}, batch size {v['batch_size']}; {v['state']}"
    )


WALKABLE_TYPES = ("uuid", "date", "timestamp without time zone", "timestamp with time zone")


def walkable(category: str, type_name: str) -> bool:
    """Key types the walk takes: numbers (N), strings (S), uuid, dates and timestamps."""
    return category in ("N", "S") or type_name in WALKABLE_TYPES


# lint: an unbatched write over a whole table

_SELECTIVE_OPERATORS = {"=", "<", "<=", ">", ">="}


def unbatched_writes(script: Script, statements: list[Statement]) -> list[tuple[int, str]]:
    """(line, advice) for each UPDATE or DELETE of an unbatched background script whose WHERE does
    not narrow it to some rows by comparing a column with a value: it would lock every row it
    changes until it commits, and could be neither paused nor resumed."""
    if script.kind is not Kind.BACKGROUND or is_batched(script):
        return []
    return [
        (s.line, _batch_advice(s.node))
        for s in statements
        if isinstance(s.node, ast.UpdateStmt | ast.DeleteStmt) and not _selective(s.node.whereClause)
    ]


def _batch_advice(node: Any) -> str:
    verb, table = type(node).__name__.removesuffix("Stmt").upper(), node.relation.relname
    return (
        f"this {verb} may change every row of {table} in one transaction, holding their locks until it ends: "
        f"batch it, with a first line such as `-- lockgate:batch table={table} key=id size=1000` and "
        "`WHERE id >= :start AND id < :end` in the statement"
    )


def _selective(where: Any) -> bool:
    if isinstance(where, ast.BoolExpr) and where.boolop == BoolExprType.AND_EXPR:
        return any(_selective(arg) for arg in where.args or ())
    if not isinstance(where, ast.A_Expr):
        return False
    sides = (where.lexpr, where.rexpr)
    value = any(isinstance(side, ast.A_Const | ast.ParamRef | ast.TypeCast | tuple) for side in sides)
    column = any(isinstance(side, ast.ColumnRef) for side in sides)
    if where.kind == A_Expr_Kind.AEXPR_IN or where.kind == A_Expr_Kind.AEXPR_BETWEEN:
        return column
    operator = where.name[-1].sval if where.name else ""
    return where.kind == A_Expr_Kind.AEXPR_OP and operator in _SELECTIVE_OPERATORS and column and value

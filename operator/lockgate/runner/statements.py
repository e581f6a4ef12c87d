"""Splitting a script into statements, and which of them cannot run in a transaction.

PostgreSQL scripts go through pglast, which embeds PostgreSQL's own parser, so dollar
quotes, nested comments and string literals split exactly as the server reads them.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Any

import pglast
from pglast import ast


@dataclass(frozen=True)
class Statement:
    """One statement of a script; `line` is where it starts in the file (1-based)."""

    sql: str
    offset: int
    line: int
    transactional: bool
    node: Any = None  # the pglast AST node, for PostgreSQL scripts


class ScriptSyntaxError(Exception):
    """The script does not parse; `line` is 1-based within the file."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class TransactionControlInScript(Exception):
    """The script manages transactions itself, which would commit behind the runner's back."""

    def __init__(self, line: int) -> None:
        super().__init__(
            f"line {line}: remove BEGIN/COMMIT/ROLLBACK; lockgate runs each migration in its own "
            "transaction (statements that cannot run in one are detected and run outside)"
        )
        self.line = line


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def split_postgres(sql: str) -> list[Statement]:
    """Split a PostgreSQL script with the server's grammar; raise ScriptSyntaxError if it does not parse."""
    try:
        raw = pglast.parse_sql(sql)
    except pglast.parser.ParseError as exc:
        message, location = exc.args[0], exc.args[1] if len(exc.args) > 1 else None
        raise ScriptSyntaxError(message, line_of(sql, location) if location is not None else None) from None
    statements = []
    for item in raw:
        start = item.stmt_location or 0
        text = sql[start : start + item.stmt_len] if item.stmt_len else sql[start:]
        if isinstance(item.stmt, ast.TransactionStmt):
            raise TransactionControlInScript(line_of(sql, start))
        statements.append(Statement(text, start, line_of(sql, start), not needs_autocommit(item.stmt), item.stmt))
    return statements


def needs_autocommit(node: Any) -> bool:
    """True for statements PostgreSQL refuses inside a transaction block."""
    match node:
        case ast.IndexStmt(concurrent=True) | ast.DropStmt(concurrent=True):
            return True
        case ast.ReindexStmt():
            concurrently = any(p.defname == "concurrently" for p in node.params or ())
            return concurrently or _enum_name(node.kind) in {"REINDEX_OBJECT_SYSTEM", "REINDEX_OBJECT_DATABASE"}
        case ast.VacuumStmt(is_vacuumcmd=True):
            return True
        case ast.AlterTableStmt():
            return any(isinstance(cmd.def_, ast.PartitionCmd) and cmd.def_.concurrent for cmd in node.cmds or ())
        case ast.ClusterStmt(relation=None):
            return True
    return isinstance(
        node,
        ast.CreatedbStmt
        | ast.DropdbStmt
        | ast.CreateTableSpaceStmt
        | ast.DropTableSpaceStmt
        | ast.AlterSystemStmt
        | ast.CreateSubscriptionStmt
        | ast.DropSubscriptionStmt,
    )


def _enum_name(value: Any) -> str:
    return getattr(value, "name", str(value))


def split_sqlite(sql: str) -> list[Statement]:
    """Split a SQLite script where SQLite's own tokenizer says a statement is complete."""
    statements, start = [], 0
    for end, char in enumerate(sql):
        if char == ";" and sqlite3.complete_statement(sql[start : end + 1]):
            statements.append(_sqlite_statement(sql, start, end + 1))
            start = end + 1
    tail = _skip_comments(sql, start)
    if tail < len(sql):
        if not sqlite3.complete_statement(sql[tail:] + "\n;"):
            raise ScriptSyntaxError("incomplete statement at the end of the script", line_of(sql, tail))
        statements.append(_sqlite_statement(sql, start, len(sql)))
    return [s for s in statements if s.sql]


_LEADING_COMMENT = re.compile(r"\s+|--[^\n]*(\n|$)|/\*.*?\*/", re.S)


def _skip_comments(sql: str, start: int) -> int:
    """Offset of the first character after whitespace and comments from `start`."""
    while match := _LEADING_COMMENT.match(sql, start):
        if match.end() == start:
            break
        start = match.end()
    return start


def _sqlite_statement(sql: str, start: int, end: int) -> Statement:
    offset = _skip_comments(sql, start)
    text = sql[offset:end].strip()
    first_word = text.split(None, 1)[0].rstrip(";").upper() if text else ""
    if first_word in {"BEGIN", "COMMIT", "END", "ROLLBACK"}:
        raise TransactionControlInScript(line_of(sql, offset))
    return Statement(text, offset, line_of(sql, offset), first_word != "VACUUM")

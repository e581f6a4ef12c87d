"""Splitting a script into statements, and which of them cannot run in a transaction (pure).

PostgreSQL scripts go through pglast, which embeds PostgreSQL's own parser, so dollar
quotes, nested comments and string literals split exactly as the server reads them.
What only psql understands is handled before: `COPY ... FROM stdin` rows are cut out (and
fed to the server through COPY), psql meta-commands are refused. Every step is linear in
the size of the file: a 10 MB file of INSERTs splits in about a second.
"""

from __future__ import annotations

import bisect
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import pglast
from pglast import ast


@dataclass(frozen=True)
class Statement:
    """One statement of a script; `line` is where it starts in the file (1-based)."""

    sql: str
    offset: int
    line: int
    postgres: bool = True
    copy_data: str | None = None  # the rows a `COPY ... FROM stdin` reads, as the file holds them

    @cached_property
    def node(self) -> Any:
        """The pglast AST node (None for SQLite), parsed on first use: building one costs about
        0.1 ms, longer than running a small INSERT, and running a script needs few of them."""
        return pglast.parse_sql(self.sql)[0].stmt if self.postgres else None

    @cached_property
    def special(self) -> bool:
        """Whether the statement may be transaction control, a COPY or one that refuses a
        transaction block: only those need their parse tree to run (a cheap, safe superset)."""
        word = _first_word(self.sql)
        if word in _PLAIN:
            return False
        upper = self.sql.upper()
        return word in _SPECIAL_FIRST_WORDS or any(w in upper for w in _AUTOCOMMIT_WORDS)

    @cached_property
    def transactional(self) -> bool:
        if not self.postgres:
            return _first_word(self.sql) != "VACUUM"
        return not self.special or not needs_autocommit(self.node)


class ScriptSyntaxError(Exception):
    """The script does not parse; `line` is 1-based within the file."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class ScriptRefused(Exception):
    """The script holds something lockgate must not run; `rule` names it for lint."""

    rule: ClassVar[str]

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


class TransactionControlInScript(ScriptRefused):
    """Transaction control that would commit or roll back behind the runner's back."""

    rule = "transaction-control"


class PsqlMetaCommand(ScriptRefused):
    """A backslash command such as \\connect, which only psql understands."""

    rule = "psql-meta-command"


class Lines:
    """Line numbers of offsets in one text: the line starts are found once, then bisected
    (counting newlines from the file start for every statement made splitting quadratic)."""

    def __init__(self, text: str) -> None:
        self.starts = [0, *(m.end() for m in re.finditer("\n", text))]

    def of(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset)


def line_of(text: str, offset: int) -> int:
    """The 1-based line of one offset in `text` (for many offsets in one text, use Lines)."""
    return text.count("\n", 0, offset) + 1


# The first keyword decides a statement's kind. These kinds are never transaction control, a COPY
# or a statement that refuses a transaction block, whatever words follow:
_PLAIN = frozenset({"INSERT", "UPDATE", "DELETE", "SELECT", "VALUES", "WITH", "MERGE", "SET", "DO", "COMMENT"})
# these kinds may be, by their first word:
_SPECIAL_FIRST_WORDS = frozenset(
    {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE", "PREPARE", "COPY"}
    | {"VACUUM", "ANALYZE", "REINDEX", "CLUSTER"}
)
# and any other statement (CREATE, DROP, ALTER ...) refuses a transaction only with one of these words.
_AUTOCOMMIT_WORDS = ("CONCURRENTLY", "DATABASE", "TABLESPACE", "SYSTEM", "SUBSCRIPTION")
_WORD = re.compile(r"[A-Za-z]+")


def _first_word(sql: str) -> str:
    match = _WORD.match(sql)
    return match[0].upper() if match else ""


def split_postgres(sql: str) -> list[Statement]:
    """Split a PostgreSQL script with the server's grammar; raise ScriptSyntaxError if it does not
    parse, ScriptRefused for psql meta-commands and for transaction control other than one BEGIN
    ... COMMIT around the whole file (which is dropped: the migration has its own transaction)."""
    lines = Lines(sql)
    source, copy_rows = _cut_psql_only(sql, lines)
    try:
        spans = pglast.parser.split(source, only_slices=True)
    except pglast.parser.ParseError as exc:
        message, location = exc.args[0], exc.args[1] if len(exc.args) > 1 else None
        raise ScriptSyntaxError(message, lines.of(location) if location is not None else None) from None
    statements = [
        Statement(
            source[span], span.start, lines.of(span.start), copy_data=copy_rows.get(_terminator(source, span.stop))
        )
        for span in spans
    ]
    for statement in statements:
        if _first_word(statement.sql) == "COPY" and (statement.copy_data is None) == _reads_stdin(statement.node):
            raise ScriptSyntaxError(_COPY_ROWS_MISSING, statement.line)
    return _unwrap(statements, _postgres_control)


def _terminator(source: str, end: int) -> int:
    """The offset of the `;` ending a statement whose text ends at `end` (only blanks between)."""
    while end < len(source) and source[end].isspace():
        end += 1
    return end


def _reads_stdin(node: Any) -> bool:
    return isinstance(node, ast.CopyStmt) and bool(node.is_from) and node.filename is None and not node.is_program


# What psql handles itself: strings, quoted names, dollar quotes and comments are skipped so a
# `;` or a backslash inside them is not taken for a statement end or a meta-command. (A plain
# character class first keeps each search fast; what follows is decided in _skip.)
_LEXEME = re.compile(r"['\"$;\\]|--|/\*")
_DOLLAR_QUOTE = re.compile(r"\$(?:[^\W\d]\w*)?\$")
_CLOSE = {
    "estring": re.compile(r"[^'\\]*(?:(?:\\.|'')[^'\\]*)*'", re.S),
    "string": re.compile(r"[^']*(?:''[^']*)*'"),
    "name": re.compile(r'[^"]*(?:""[^"]*)*"'),
}
_COMMENT_EDGE = re.compile(r"/\*|\*/")
_COPY_FROM_STDIN = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/)*COPY\b.*\bFROM\s+STDIN\b", re.I | re.S)
_REST_OF_LINE = re.compile(r"[ \t\r]*(?:\n|\Z)")
_END_OF_ROWS = re.compile(r"^\\\.[ \t\r]*$", re.M)
_COPY_ROWS_MISSING = "COPY ... FROM stdin; needs its rows on the lines after it, ended by a line holding only \\."
_RESTRICT = re.compile(r"\\(?:un)?restrict[ \t]+\w+[ \t\r]*$", re.M)


def _cut_psql_only(sql: str, lines: Lines) -> tuple[str, dict[int, str]]:
    """The script with what only psql reads blanked out (same length, so offsets and lines stay
    true): the rows after each `COPY ... FROM stdin;`, returned by the offset of that `;`, and
    pg_dump's `\\restrict` / `\\unrestrict` lines (they stop psql from running meta-commands;
    lockgate runs none). Raise PsqlMetaCommand for any other backslash outside quotes."""
    rows: dict[int, str] = {}
    if "\\" not in sql and "stdin" not in sql.lower():
        return sql, rows  # the common case, found in one pass: nothing psql-only to cut or refuse
    blanks: list[tuple[int, int]] = []
    position = statement_start = 0
    while lexeme := _LEXEME.search(sql, position):
        if lexeme[0] == "\\":
            position = statement_start = _restrict_line_end(sql, lexeme.start(), lines)
            blanks.append((lexeme.start(), position))
        elif lexeme[0] != ";":
            position = _skip(sql, lexeme)
        elif _COPY_FROM_STDIN.match(sql, statement_start, lexeme.start()):
            start, end = _rows_after(sql, lexeme.start(), lines)
            rows[lexeme.start()], position = sql[start : end.start()], end.end()
            blanks.append((start, position))
            statement_start = position
        else:
            statement_start = position = lexeme.end()
    return _blanked(sql, blanks), rows


def _restrict_line_end(sql: str, backslash: int, lines: Lines) -> int:
    restrict = _RESTRICT.match(sql, backslash)
    if restrict is None:
        raise PsqlMetaCommand(
            lines.of(backslash),
            f"{sql[backslash : backslash + 40].split()[0]} is a psql meta-command, which only psql understands: "
            "remove it (lockgate connects to --database-url itself and runs each file as plain SQL)",
        )
    return restrict.end()


def _blanked(sql: str, spans: list[tuple[int, int]]) -> str:
    pieces, kept = [], 0
    for start, end in spans:
        pieces += [sql[kept:start], " " * (end - start)]
        kept = end
    return "".join([*pieces, sql[kept:]])


def _skip(sql: str, lexeme: re.Match[str]) -> int:
    """The offset after the string, quoted name, dollar-quoted text or comment `lexeme` opens."""
    opening, start, position = lexeme[0], lexeme.start(), lexeme.end()
    kind = {"'": "string", '"': "name"}.get(opening)
    if kind == "string" and sql[start - 1 : start] in ("E", "e") and not _identifier_char(sql, start - 2):
        kind = "estring"  # E'...' takes backslash escapes
    if kind:
        closed = _CLOSE[kind].match(sql, position)
        return closed.end() if closed else len(sql)  # unterminated: the parser will say where
    if opening == "$":
        tag = _DOLLAR_QUOTE.match(sql, start)
        if tag is None or _identifier_char(sql, start - 1):
            return position  # $1, or a `$` inside a name such as a$b$
        end = sql.find(tag[0], tag.end())
        return end + len(tag[0]) if end >= 0 else len(sql)
    if opening == "--":
        end = sql.find("\n", position)
        return end if end >= 0 else len(sql)
    return _block_comment_end(sql, position)


def _identifier_char(sql: str, index: int) -> bool:
    return index >= 0 and (sql[index].isalnum() or sql[index] in "_$")


def _rows_after(sql: str, semicolon: int, lines: Lines) -> tuple[int, re.Match[str]]:
    """Where the rows after a `COPY ... FROM stdin;` start, and their closing `\\.` line."""
    rest = _REST_OF_LINE.match(sql, semicolon + 1)
    end = _END_OF_ROWS.search(sql, rest.end()) if rest else None
    if rest is None or end is None:
        raise ScriptSyntaxError(_COPY_ROWS_MISSING, lines.of(semicolon))
    return rest.end(), end


def _block_comment_end(sql: str, position: int) -> int:
    """The end of a block comment opened just before `position`; they nest in PostgreSQL."""
    depth = 1
    for edge in _COMMENT_EDGE.finditer(sql, position):
        depth += 1 if edge[0] == "/*" else -1
        if depth == 0:
            return edge.end()
    return len(sql)


# Transaction control: a plain BEGIN first and a plain COMMIT last wrap the whole file (many
# corpora are written so); anything else would commit or roll back behind the runner's back.
_WRAP_BEGIN, _WRAP_COMMIT, _OTHER_CONTROL = "begin", "commit", "other"


def _postgres_control(statement: Statement) -> str | None:
    if not statement.special or not isinstance(statement.node, ast.TransactionStmt):
        return None
    kind, node = getattr(statement.node.kind, "name", ""), statement.node
    if kind in {"TRANS_STMT_BEGIN", "TRANS_STMT_START"} and not node.options:
        return _WRAP_BEGIN
    return _WRAP_COMMIT if kind == "TRANS_STMT_COMMIT" and not node.chain else _OTHER_CONTROL


def _sqlite_control(statement: Statement) -> str | None:
    words = _WORD.findall(statement.sql[:40].upper())[:2]
    if words[:1] == ["BEGIN"]:
        return _WRAP_BEGIN if words[1:] in ([], ["TRANSACTION"]) else _OTHER_CONTROL
    if words[:1] in (["COMMIT"], ["END"]):
        return _WRAP_COMMIT
    return _OTHER_CONTROL if words[:1] in (["ROLLBACK"], ["SAVEPOINT"], ["RELEASE"]) else None


def _unwrap(statements: list[Statement], control: Callable[[Statement], str | None]) -> list[Statement]:
    """The statements without a BEGIN ... COMMIT wrapping them all; refuse any other transaction control."""
    kinds = [control(s) for s in statements]
    marked = [i for i, kind in enumerate(kinds) if kind]
    if not marked:
        return statements
    last = len(statements) - 1
    wrapped = kinds[0] == _WRAP_BEGIN and kinds[last] == _WRAP_COMMIT and last > 0
    stray = [i for i in marked if not (i == 0 and kinds[0] == _WRAP_BEGIN) and not (wrapped and i == last)]
    if stray:
        culprit = statements[stray[0]]
        raise TransactionControlInScript(
            culprit.line,
            f"{_head(culprit)}: lockgate runs each migration in its own transaction, and transaction control "
            "inside the file would commit or roll back behind its back: remove it (a plain BEGIN; as the "
            "first statement with COMMIT; as the last, around the whole file, is fine)",
        )
    if not wrapped:
        raise TransactionControlInScript(
            statements[0].line, f"{_head(statements[0])} has no COMMIT; at the end of the file: add one, or remove it"
        )
    body = statements[1:last]
    for statement in body:
        if not statement.transactional:
            raise TransactionControlInScript(
                statement.line,
                f"{_head(statement)} cannot run inside a transaction, but the file is wrapped in BEGIN (line "
                f"{statements[0].line}) ... COMMIT (line {statements[last].line}): remove the BEGIN and COMMIT, "
                "and lockgate runs this statement outside a transaction and the others inside",
            )
    return body


def _head(statement: Statement) -> str:
    """The first words of a statement, to name it in a message."""
    return " ".join(statement.sql[:80].split()[:4]).rstrip(";")


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
    lines = Lines(sql)
    statements, start = [], 0
    for semicolon in re.finditer(";", sql):
        end = semicolon.end()
        if sqlite3.complete_statement(sql[start:end]):
            statements.append(_sqlite_statement(sql, start, end, lines))
            start = end
    tail = _skip_comments(sql, start)
    if tail < len(sql):
        if not sqlite3.complete_statement(sql[tail:] + "\n;"):
            raise ScriptSyntaxError("incomplete statement at the end of the script", lines.of(tail))
        statements.append(_sqlite_statement(sql, start, len(sql), lines))
    return _unwrap([s for s in statements if s.sql], _sqlite_control)


_LEADING_COMMENT = re.compile(r"\s+|--[^\n]*(\n|$)|/\*.*?\*/", re.S)


def _skip_comments(sql: str, start: int) -> int:
    """Offset of the first character after whitespace and comments from `start`."""
    while match := _LEADING_COMMENT.match(sql, start):
        if match.end() == start:
            break
        start = match.end()
    return start


def _sqlite_statement(sql: str, start: int, end: int, lines: Lines) -> Statement:
    offset = _skip_comments(sql, start)
    return Statement(sql[offset:end].strip(), offset, lines.of(offset), postgres=False)

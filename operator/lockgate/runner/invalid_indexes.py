"""INVALID indexes a failed or killed concurrent build leaves behind (CREATE INDEX CONCURRENTLY,
REINDEX CONCURRENTLY): dropped before the statement runs again and after it fails, so a retry
never trips over its own leftovers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pglast import ast

from .connection import DatabaseError
from .database import Database
from .say import Say
from .statements import Statement


@dataclass
class IndexBuild:
    """One statement outside a transaction; `table` is None unless it builds an index concurrently."""

    db: Database
    progress: Say
    table: str | None = None
    invalid_before: set[str] = field(default_factory=set)

    @classmethod
    def start(cls, db: Database, statement: Statement, progress: Say) -> IndexBuild:
        """Drop what an earlier, killed run of this statement left, and note the INVALID indexes now."""
        build = cls(db, progress, _index_table(db, statement))
        if build.table is not None:
            invalid = db.invalid_indexes(build.table)
            build._drop({q for q, name in invalid.items() if _left_by_earlier_attempt(statement, name)})
            build.invalid_before = set(db.invalid_indexes(build.table))
        return build

    def failed(self) -> None:
        """The statement failed: drop the INVALID indexes it left."""
        if self.table is not None:
            self._drop(set(self.db.invalid_indexes(self.table)) - self.invalid_before)

    def _drop(self, names: set[str]) -> None:
        for name in sorted(names):
            self.progress(f"  dropping INVALID index {name} left by a failed concurrent build")
            try:
                self.db.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            except DatabaseError as exc:
                self.progress(f"  could not drop {name} ({self.db.error_of(exc).message}): drop it by hand")


def _index_table(db: Database, statement: Statement) -> str | None:
    node = statement.node
    if isinstance(node, ast.IndexStmt) and node.concurrent:
        return _qualified(node.relation)
    if isinstance(node, ast.ReindexStmt) and node.relation is not None:
        name = _qualified(node.relation)
        return db.table_of_index(name) if getattr(node.kind, "name", None) == "REINDEX_OBJECT_INDEX" else name
    return None


def _left_by_earlier_attempt(statement: Statement, index_name: str) -> bool:
    """Whether an INVALID index is what a killed earlier run of this very statement left behind
    (we hold the migration lock and the migration is not recorded, so no one else is building it)."""
    node = statement.node
    if isinstance(node, ast.IndexStmt):
        return index_name == node.idxname
    return bool(re.search(r"_cc(new|old)\d*$", index_name))  # REINDEX CONCURRENTLY's temporary names


def _qualified(relation: object) -> str:
    schema = getattr(relation, "schemaname", None)
    name = _quote(relation.relname)  # type: ignore[attr-defined]
    return f"{_quote(schema)}.{name}" if schema else name


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'

"""The schemas a schemaQuery lists: the SQL of spec.targets.schemaQuery, which each pod of its Job
runs itself (the operator never connects to a database), in a read-only transaction under a
statement_timeout; the first column of each row, as text (runner/targets.py picks the pod's own)."""

from __future__ import annotations

from ..shared.errors import UsageError
from .connection import DatabaseError, connect, first_line, parse_url

STATEMENT_TIMEOUT = "60s"  # a listing query: a slow one fails its index, naming the timeout
FIELD = "spec.targets.schemaQuery.sql"


def listed_schemas(url: str, sql: str) -> list[str | None]:
    """The query's first column, as text (NULL as None). A query that fails or returns no rows'
    shape is a UsageError quoting PostgreSQL's first line: the query is the user's own and may be
    shown; the URL never is (connect names host:port/db only)."""
    target = parse_url(url)
    if target.dialect != "postgresql":
        raise UsageError(f"{FIELD}: schemas are PostgreSQL's: spec.database must name a PostgreSQL database")
    conn = connect(target)
    try:
        conn.execute("BEGIN READ ONLY")
        conn.execute(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'")
        cursor = conn.execute(sql)
        if cursor.description is None:
            raise UsageError(f"{FIELD}: the query returned no rows, not even none: give a SELECT of schema names")
        rows = cursor.fetchall()
    except DatabaseError as exc:
        sqlstate = getattr(exc.orig, "sqlstate", None)
        raise UsageError(f"{FIELD} failed: [{sqlstate}] {first_line(exc.orig)}") from None
    finally:
        conn.close()  # the read-only transaction ends with the connection: it wrote nothing
    return [None if row[0] is None else str(row[0]) for row in rows]

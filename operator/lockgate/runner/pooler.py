"""Whether the migration lock's connection goes through a pooler in transaction mode (pure).

A session advisory lock belongs to one server session. Behind PgBouncer in transaction (or
statement) mode a client borrows a server session per transaction: the lock stays with a server
connection other clients then borrow, and the next statement may run in a session without it.
"""

from __future__ import annotations

from collections.abc import Sequence


def pooled_per_transaction(lock_pids: Sequence[int], other_pids: Sequence[int]) -> bool:
    """`lock_pids`: pg_backend_pid() of successive statements on the lock connection;
    `other_pids`: the same on another connection open at the same time. Without a pooler in
    between, one connection is one backend and two connections are two backends."""
    return len(set(lock_pids)) > 1 or bool(set(lock_pids) & set(other_pids))


def pooler_refusal(lock_pids: Sequence[int], other_pids: Sequence[int]) -> str:
    seen = ", ".join(map(str, lock_pids))
    other = ", ".join(map(str, other_pids))
    return (
        "the database URL leads through a connection pooler in transaction mode (e.g. PgBouncer "
        f"pool_mode = transaction): the lock connection ran in server backends {seen} and another "
        f"connection in {other}, so the migration lock cannot be held. Point lockgate at PostgreSQL "
        "directly, or at a session-mode pool (pool_mode = session)"
    )

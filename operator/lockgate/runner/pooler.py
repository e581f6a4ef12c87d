"""Whether the runner's connections reach PostgreSQL sessions of their own (pure).

A session advisory lock belongs to one server session. Behind PgBouncer in transaction (or
statement) mode a client borrows a server session per transaction: a session lock stays with a
server connection other clients then borrow, and the next statement may run in a session
without it. A connection is *proven direct* when the server sees it coming from the very
address and port of the runner's socket: a pooler opens its own sockets to the server.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Endpoint = tuple[str, int]


def proven_direct(local: Endpoint | None, seen_by_server: tuple[str | None, int | None]) -> bool:
    """`local`: the runner's end of its TCP socket (None for a Unix socket, which proves nothing);
    `seen_by_server`: inet_client_addr() and inet_client_port() of the session serving it."""
    addr, port = seen_by_server
    if local is None or addr is None or port is None:
        return False
    return local[1] == port and _address(local[0]) == _address(addr)


def pooled_per_transaction(samples: Sequence[Sequence[int]]) -> bool:
    """`samples`: for each connection open at the same time, pg_backend_pid() of successive
    statements on it. Without a pooler in between, one connection is one backend and two
    connections are two backends."""
    seen: set[int] = set()
    for pids in samples:
        if len(set(pids)) > 1 or seen & set(pids):
            return True
        seen |= set(pids)
    return False


def pooler_refusal(samples: Sequence[Sequence[int]]) -> str:
    runs = "; ".join(", ".join(map(str, pids)) for pids in samples)
    return (
        "the database URL leads through a connection pooler in transaction mode (e.g. PgBouncer "
        f"pool_mode = transaction): successive statements of the runner's connections ran in server "
        f"backends {runs}, so no migration lock can be held. Nothing was run and no lock is left "
        "behind. Point lockgate at PostgreSQL directly, or at a session-mode pool (pool_mode = session)"
    )


def holder_query(classid: int, objid: int) -> str:
    """The query that ends the session holding the migration lock (its key as pg_locks shows it):
    what to run when no runner is at work and the lock stays held (a pooled server session an
    older runner left)."""
    return (
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        f"AND classid = {classid} AND objid = {objid} AND objsubid = 1"
    )


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | str:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return mapped or address

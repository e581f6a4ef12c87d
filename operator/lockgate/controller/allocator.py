"""The operator's use of the C allocator (glibc malloc): two arenas, and freed memory handed back
once the operator is quiet.

glibc gives threads that allocate at the same time arenas of their own, up to eight per core; the
reconciler's API threads (kube.API_CALLS_IN_FLIGHT) each parse answers, so after a burst of
SchemaMigrations the memory they freed stays spread over many arenas. And freed memory inside a
heap goes back to the system only from the heap's top: `malloc_trim` returns the free pages in
the middle too. With another C library (musl), both are left as they are.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import functools

M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h
ARENAS = 2  # the event loop's (the main arena) and one shared by the API threads
QUIET = 5.0  # seconds without watch events before freed memory is handed back


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    libc = ctypes.CDLL(None)  # the C library this process already runs on
    return libc if hasattr(libc, "gnu_get_libc_version") else None


def limit_arenas() -> bool:
    """Call before the process starts threads: glibc fixes the arena limit at a thread's first arena."""
    libc = _glibc()
    return libc is not None and libc.mallopt(M_ARENA_MAX, ARENAS) == 1


def trim() -> bool:
    """Hand the free pages of every arena back to the system; True if any were."""
    libc = _glibc()
    return libc is not None and libc.malloc_trim(0) == 1


class Trimmer:
    """Trims once the watches have been quiet for QUIET seconds: after a burst, not during it."""

    def __init__(self) -> None:
        self._timer: asyncio.TimerHandle | None = None

    def poke(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        # An empty context: the caller's (a kopf handler's) holds the event's whole body.
        self._timer = asyncio.get_running_loop().call_later(QUIET, trim, context=contextvars.Context())

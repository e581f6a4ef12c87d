"""The batched walk's shell: reads key ranges, runs each batch with its progress row, reports.

Every decision is header.py's; this loop talks to the database, the clock, signals and files.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...shared.errors import Paused
from ...shared.phases import Phase, lane
from ...shared.progress import progress_line
from ..connection import DatabaseError
from ..database import Database, advisory_ids, advisory_key
from ..options import Limits
from ..say import Say
from ..scripts import Script
from ..statements import Statement
from . import header, pressure
from .header import Batched, BatchScriptError, Walk

SAY_EVERY = 2.0  # seconds between progress lines
Retry = Callable[[str, Callable[[], None]], None]


@dataclass(frozen=True)
class Hooks:
    """What the runner lends the walk: its lock-timeout retries, its error type, its history."""

    retry: Retry
    failed: Callable[[Statement, DatabaseError], Exception]
    record: Callable[[int], None]  # writes the script's history row (given its ms) in the open transaction
    progress: Say
    progress_file: str | None
    limits: Limits


@dataclass(frozen=True)
class Key:
    type_name: str  # the column's type without modifiers, as format_type prints it
    category: str  # pg_type.typcategory


def progress_table(db: Database) -> str:
    """lockgate_batch_progress, in the history table's schema."""
    return f"{db.table.schema}.{header.PROGRESS_TABLE}" if db.table.schema else header.PROGRESS_TABLE


def run(db: Database, script: Script, batched: Batched, hooks: Hooks) -> int:
    """Walk the script to its end (or SIGTERM); returns its batches' total ms."""
    return _Walker(db, script, batched, hooks).run()


def read_progress(db: Database) -> dict[str, dict[str, Any]]:
    """script -> header.view() of every walk recorded for this history table (for `lockgate info`)."""
    table = progress_table(db)
    if not db.is_postgres or not _exists(db, table):
        return {}
    rows = db.conn.execute(f"SELECT {_COLUMNS} FROM {table} WHERE history = %(h)s", {"h": db.table_name}).fetchall()
    running = _lane_busy(db)
    views = {}
    for row in rows:
        walk = Walk(*row)
        if walk.state in ("running", "waiting") and not running:
            walk = replace(walk, state="interrupted")  # its runner died: a rerun resumes it
        views[walk.script] = header.view(walk)
    return views


_COLUMNS = ", ".join(f.name for f in fields(Walk))


class _Walker:
    def __init__(self, db: Database, script: Script, batched: Batched, hooks: Hooks) -> None:
        self.db, self.script, self.hooks = db, script, hooks
        self.header = batched.header
        self.statement = batched.statement
        self.query = header.driver_sql(batched.statement)
        self.last_query = header.driver_sql(batched.statement, last=True)
        self.table = progress_table(db)
        self.said = 0.0
        self.rest = 0.0  # seconds to rest after the last batch

    def run(self) -> int:
        _ensure_table(self.db, self.table)
        key = self._key()
        walk = header.resume(self._load(), self.script, self.header, self.table)
        walk = replace(walk, total_estimate=self._estimate())
        start = self._first_key() if walk.last_key is None else self._cast(walk.last_key, key)
        self._save(walk)
        if walk.batches:
            self._say(f"resuming after batch {walk.batches}: {header.describe(walk)}", walk)
        if blind := pressure.blind_spots(pressure.read_pressure(self.db.conn, self.header.table)):
            self.hooks.progress(f"  {self.script.label} note: {blind}")
        with _sigterm() as stopping:
            while not walk.done:
                walk = self._wait_while_busy(walk, stopping)
                if stopping():
                    self._pause(walk)
                walk, start = self._batch(walk, start, key)
                self._rest(walk, stopping)
        self._say(f"done: {header.describe(walk)}", walk, force=True)
        return walk.active_ms

    # one batch

    def _batch(self, walk: Walk, start: Any, key: Key) -> tuple[Walk, Any]:
        scanned, end, last = self._range(start, key, walk.size)
        end_text = self._scalar("SELECT %(v)s::text", {"v": end})
        result: list[Walk] = []

        def attempt() -> None:
            began = time.monotonic()
            self.db.begin()
            try:
                rows = self._execute({"start": start, "end": end}, last) if start is not None else 0
                ms = _ms_since(began)
                after = header.after_batch(walk, scanned, rows, ms, end_text, last, self.header)
                self._save(after)
                if last:
                    self.hooks.record(after.active_ms)
                self.db.commit()
            except BaseException:
                self.db.rollback()
                raise
            result.append(after)
            self.rest = header.rest_after(rows, ms, self.header)

        try:
            self.hooks.retry(f"{self.script.name} batch {walk.batches + 1}", attempt)
        except Exception:
            failed = replace(walk, state="failed")
            with contextlib.suppress(DatabaseError):  # a lost connection: its own error says more
                self._save(failed)
            self._say(f"failed in batch {walk.batches + 1}: {header.describe(failed)}", failed, force=True)
            raise
        self._say(header.describe(result[0]), result[0], force=last)
        return result[0], end

    def _range(self, start: Any, key: Key, size: int) -> tuple[int, Any, bool]:
        """(keys in the range, its end, whether it is the last) for a range from `start`: the end is
        exclusive, but the last range's is the greatest key, which it holds (see header.driver_sql)."""
        if start is None:  # an empty table: one empty batch finishes the walk
            return 0, None, True
        row = self.db.conn.one(
            f"SELECT k, n FROM (SELECT {self._k} AS k, row_number() OVER (ORDER BY {self._k}) AS n FROM "
            f"{self.header.table} WHERE {self._k} >= %(s)s::{key.type_name} ORDER BY {self._k} LIMIT %(l)s) w "
            "ORDER BY n DESC LIMIT 1",
            {"s": start, "l": size + 1},
        )
        last_key, count = row
        if count <= size:
            return count, last_key, True
        if last_key != start:
            return size, last_key, False
        following = self._scalar(
            f"SELECT {self._k} FROM {self.header.table} WHERE {self._k} > %(s)s::{key.type_name} "
            f"ORDER BY {self._k} LIMIT 1",
            {"s": start},
        )  # more than `size` rows share the key `start`: this range holds all of them
        return (size, following, False) if following is not None else (size, start, True)

    def _execute(self, params: dict[str, Any], last: bool) -> int:
        try:
            return int(self.db.conn.execute(self.last_query if last else self.query, params).rowcount)
        except DatabaseError as exc:
            raise self.hooks.failed(self.statement, exc) from None

    # between batches

    def _wait_while_busy(self, walk: Walk, stopping: Callable[[], bool]) -> Walk:
        attempt = 0
        while not stopping() and (reason := pressure.wait_reason(self.db.conn, self.header.table, self.hooks.limits)):
            walk = replace(walk, state="waiting")
            self._save(walk)
            self._say(f"waiting: {reason}", walk, force=True, waiting=reason)
            _sleep(header.wait_backoff(attempt), stopping)
            attempt += 1
        return walk

    def _rest(self, walk: Walk, stopping: Callable[[], bool]) -> None:
        if not walk.done:
            _sleep(self.rest, stopping)

    def _pause(self, walk: Walk) -> None:
        walk = replace(walk, state="paused")
        self._save(walk)
        self._say(f"paused after batch {walk.batches}: {header.describe(walk)}", walk, force=True)
        raise Paused(
            f"{self.script.name}: paused after batch {walk.batches} ({walk.rows} rows) on SIGTERM; "
            "run migrate --phase background again to resume after it"
        )

    # what it knows and says

    def _key(self) -> Key:
        row = self.db.conn.first(
            "SELECT format_type(a.atttypid, NULL), t.typcategory, EXISTS (SELECT 1 FROM pg_index i "
            "JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam "
            "WHERE i.indrelid = a.attrelid AND i.indkey[0] = a.attnum AND am.amname = 'btree' AND i.indpred IS NULL) "
            "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE a.attrelid = to_regclass(%(t)s) AND a.attname = %(k)s AND NOT a.attisdropped",
            {"t": self.header.table, "k": self.header.key_name},
        )
        where = f"{self.script.name} line {self.header.line}"
        if row is None:
            raise BatchScriptError(f"{where}: table {self.header.table} has no column {self.header.key}")
        type_name, category, indexed = row
        if not indexed:
            raise BatchScriptError(
                f"{where}: no btree index starts with {self.header.table}.{self.header.key}, so every batch "
                "would scan the table: index the key (CREATE INDEX CONCURRENTLY in an expand migration)"
            )
        if not header.walkable(category, type_name):
            raise BatchScriptError(
                f"{where}: key {self.header.key} has type {type_name}; batched walks take integer, numeric, "
                "text, uuid, date or timestamp keys"
            )
        return Key(type_name, category)

    def _first_key(self) -> Any:
        return self._scalar(f"SELECT {self._k} FROM {self.header.table} ORDER BY {self._k} LIMIT 1", {})

    def _cast(self, text: str, key: Key) -> Any:
        return self._scalar(f"SELECT %(v)s::{key.type_name}", {"v": text})

    def _estimate(self) -> int | None:
        rows = self._scalar(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%(t)s)", {"t": self.header.table}
        )
        return int(rows) if rows is not None and rows >= 0 else None  # -1: never analysed

    def _load(self) -> Walk | None:
        row = self.db.conn.first(
            f"SELECT {_COLUMNS} FROM {self.table} WHERE history = %(h)s AND script = %(s)s",
            {"h": self.db.table_name, "s": self.script.name},
        )
        return Walk(*row) if row else None

    def _save(self, walk: Walk) -> None:
        values = {f.name: getattr(walk, f.name) for f in fields(Walk)} | {"history": self.db.table_name}
        names = ", ".join(values)
        updates = ", ".join(f"{n} = excluded.{n}" for n in values if n not in ("history", "script"))
        self.db.conn.execute(
            f"INSERT INTO {self.table} ({names}) VALUES ({', '.join(f'%({n})s' for n in values)}) "
            f"ON CONFLICT (history, script) DO UPDATE SET {updates}, updated_on = now()",
            values,
        )

    def _scalar(self, sql: str, params: dict[str, Any]) -> Any:
        return self.db.conn.scalar(sql, params)

    @property
    def _k(self) -> str:
        return self.header.key

    def _say(self, line: str, walk: Walk, force: bool = False, waiting: str | None = None) -> None:
        """A progress line and the progress file, at most every SAY_EVERY seconds unless forced."""
        if not force and time.monotonic() - self.said < SAY_EVERY:
            return
        self.said = time.monotonic()
        self.hooks.progress(f"  {self.script.label} {line}")
        view = header.view(walk)
        self.hooks.progress(progress_line(view))  # for the operator, which reads the pod's log
        if self.hooks.progress_file:
            document = view | {"waiting": waiting, "updated_at": datetime.now(UTC).isoformat()}
            _write_atomically(self.hooks.progress_file, json.dumps(document))


def _ensure_table(db: Database, table: str) -> None:
    if _exists(db, table):
        return
    db.begin()
    try:
        db.lock_table_creation()
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (history text NOT NULL, script text NOT NULL, "
            "checksum text NOT NULL, size integer NOT NULL, last_key text, rows bigint NOT NULL, "
            "scanned bigint NOT NULL, batches integer NOT NULL, active_ms bigint NOT NULL, total_estimate bigint, "
            "state text NOT NULL, done boolean NOT NULL, started_on timestamptz NOT NULL DEFAULT now(), "
            "updated_on timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (history, script))"
        )
        db.commit()
    except BaseException:
        db.rollback()
        raise


def _exists(db: Database, table: str) -> bool:
    return bool(db.conn.scalar("SELECT to_regclass(%(t)s) IS NOT NULL", {"t": table}))


def _lane_busy(db: Database) -> bool:
    """Whether a runner holds this history table's background lock, i.e. a walk is really running."""
    classid, objid = advisory_ids(advisory_key(db.table_name, lane(Phase.BACKGROUND)))
    return bool(
        db.conn.scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %(c)s AND objid = %(o)s AND objsubid = 1)",
            {"c": classid, "o": objid},
        )
    )


@contextmanager
def _sigterm() -> Iterator[Callable[[], bool]]:
    """SIGTERM (a suspended Job, a drained node) stops the walk after the batch in flight commits."""
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda number, _frame: received.append(number))
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sleep(seconds: float, stopping: Callable[[], bool]) -> None:
    """Sleep in short steps, so SIGTERM is acted on within a tenth of a second."""
    deadline = time.monotonic() + seconds
    while not stopping() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(0.1, left))


def _write_atomically(path: str, text: str) -> None:
    """Readers never see half a document: write beside it, then rename over it."""
    target = Path(path)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    os.replace(temporary, target)


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)

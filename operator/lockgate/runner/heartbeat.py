"""Says, while a long migration runs (an index build, a backfill), that it is still at work."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .say import Say


class Heartbeat:
    """One thread for a whole run that says, every `every` seconds, that the current migration
    is still at work; fast migrations cost it nothing."""

    def __init__(self, progress: Say, every: float = 10.0) -> None:
        self.progress, self.every = progress, every
        self._current: tuple[str, float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @contextmanager
    def track(self, label: str) -> Iterator[None]:
        self._current = (label, time.monotonic())
        try:
            yield
        finally:
            self._current = None

    def _beat(self) -> None:
        told: tuple[str, float] | None = None
        while not self._stop.wait(0.5):
            current = self._current
            if current is None:
                continue
            label, started = current
            running = time.monotonic() - started
            last = told[1] if told and told[0] == label else 0.0
            if running - last >= self.every:
                self.progress(f"{label} still running after {running:.0f} s")
                told = (label, running)

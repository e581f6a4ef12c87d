"""Dotted schema versions compared part by part: 1.9 < 1.10, 2026.11.21.1 > 2026.11.21 (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import total_ordering

_VERSION = re.compile(r"^\d+([._]\d+)*$")


@total_ordering
@dataclass(frozen=True)
class Version:
    """A schema version; trailing zero parts do not count, so 1.0 == 1."""

    parts: tuple[int, ...]
    # Computed once: sorting and comparing thousands of versions (a plan over 5,000 applied
    # scripts) would otherwise rebuild it on every comparison.
    _key: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = list(self.parts)
        while len(key) > 1 and key[-1] == 0:
            key.pop()
        object.__setattr__(self, "_key", tuple(key))

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse '1.10' or Flyway-style '1_10'; raise ValueError saying what is wrong."""
        if not _VERSION.match(text):
            raise ValueError(f"{text!r} is not a version: use dotted numbers such as 3, 1.10 or 2026.11.21.1")
        return cls(tuple(int(p) for p in re.split(r"[._]", text)))

    @classmethod
    def parse_or_none(cls, text: str | None) -> Version | None:
        """A version from an API object's text, where absent and malformed both mean "none"."""
        try:
            return cls.parse(text) if text else None
        except ValueError:
            return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __lt__(self, other: Version) -> bool:
        return self._key < other._key

    def __str__(self) -> str:
        return ".".join(str(p) for p in self.parts)

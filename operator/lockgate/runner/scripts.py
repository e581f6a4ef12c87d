"""Migration scripts on disk: naming, phases and checksums."""

from __future__ import annotations

import codecs
import enum
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..shared.errors import UsageError, ValidationRefused
from ..shared.phases import Phase
from ..shared.versions import Version


class Kind(enum.StrEnum):
    """What a script file is; its name's first letter (the one place the letters are spelled)."""

    VERSIONED = "V"
    BACKGROUND = "A"
    CONTRACT = "C"
    UNDO = "U"
    REPEATABLE = "R"


KIND_PHASE = {Kind.VERSIONED: Phase.EXPAND, Kind.BACKGROUND: Phase.BACKGROUND, Kind.CONTRACT: Phase.CONTRACT}
PHASE_KIND = {phase: kind for kind, phase in KIND_PHASE.items()}

_NAME = re.compile(r"^(?P<kind>[VACU])(?P<version>\d+(?:[._]\d+)*)__(?P<desc>.+)\.sql$|^R__(?P<rdesc>.+)\.sql$")


@dataclass(frozen=True)
class Script:
    """One migration file; `version` is None for repeatable scripts."""

    kind: Kind
    version: Version | None
    description: str
    name: str
    sql: str
    checksum: str

    @property
    def number(self) -> Version:
        """The version of a V, A, C or U script (repeatable scripts have none)."""
        if self.version is None:
            raise ValueError(f"{self.name} is repeatable: it has no version")
        return self.version

    @property
    def label(self) -> str:
        return f"{self.kind.value}{self.version}" if self.version else self.name


def checksum(sql: str) -> str:
    """SHA-256 of the script's text (decoded, BOM stripped) as UTF-8, with line endings normalised,
    so a CRLF checkout is not an edit. Hashing the text rather than the bytes keeps the checksum of
    every file that already loaded before BOMs and --encoding were accepted, and re-saving a
    latin-1 file as UTF-8 (or adding or removing a BOM) is not an edit either."""
    return hashlib.sha256(sql.replace("\r\n", "\n").encode()).hexdigest()


def parse_name(name: str) -> tuple[Kind, Version | None, str]:
    """Split a file name into kind, version and description, or explain the expected form."""
    match = _NAME.match(name)
    if not match:
        raise ValueError(
            f"{name}: not a migration file name; use V<version>__<description>.sql "
            "(or A, C, U for background, contract and undo) or R__<description>.sql"
        )
    if match["rdesc"]:
        return Kind.REPEATABLE, None, match["rdesc"].replace("_", " ")
    return Kind(match["kind"]), Version.parse(match["version"]), match["desc"].replace("_", " ")


def load_scripts(directory: str | Path, encoding: str = "utf-8") -> list[Script]:
    """Read every *.sql file below `directory` (hidden entries skipped), validated as a set."""
    root = Path(directory)
    if not root.is_dir():
        raise UsageError(f"migrations directory {root} does not exist (set --dir or LOCKGATE_MIGRATIONS_DIR)")
    paths = _script_paths(root)
    problems: list[str] = []
    scripts: list[Script] = []
    for relative, path in paths:
        try:
            kind, version, description = parse_name(path.name)
            sql = decode(path.read_bytes(), encoding, relative)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        scripts.append(Script(kind, version, description, path.name, sql, checksum(sql)))
    problems += _duplicates(scripts)
    if problems:
        raise ValidationRefused(problems)
    return scripts


def _script_paths(root: Path) -> list[tuple[str, Path]]:
    """(name relative to `root`, path) of every *.sql file below `root` in order, hidden files and
    directories skipped (a ConfigMap volume's ..data among them)."""
    found = []
    for folder, directories, files in os.walk(root):
        directories[:] = [d for d in directories if not d.startswith(".")]
        relative = os.path.relpath(folder, root)
        found += [
            (os.path.normpath(os.path.join(relative, f)), Path(folder, f))
            for f in files
            if f.endswith(".sql") and not f.startswith(".")
        ]
    return sorted(found, key=lambda item: item[0])


def decode(data: bytes, encoding: str, name: str) -> str:
    """A script's text. A UTF-8 byte order mark (some editors write one) is dropped, and it says
    the file is UTF-8 whatever `encoding` is; a byte the encoding does not allow is a ValueError
    naming the file, line and byte."""
    if data.startswith(codecs.BOM_UTF8):
        data, encoding = data[len(codecs.BOM_UTF8) :], "utf-8"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(
            f"{name} line {line}: byte 0x{data[exc.start]:02x} is not valid {codecs.lookup(encoding).name}; "
            "re-save the file as UTF-8, or pass --encoding with the encoding it is in (e.g. --encoding latin-1)"
        ) from None


def _duplicates(scripts: list[Script]) -> list[str]:
    seen: dict[tuple[Kind, Version | str | None], str] = {}
    problems = []
    for script in scripts:
        key = (script.kind, script.version if script.version else script.description)
        if key in seen:
            problems.append(f"{script.name} and {seen[key]} have the same {script.kind.value} version: rename one")
        seen[key] = script.name
    return problems

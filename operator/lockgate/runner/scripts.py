"""Migration scripts on disk: naming, phases and checksums."""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..shared.errors import UsageError, ValidationRefused
from ..shared.phases import Phase
from ..shared.versions import Version


class Kind(enum.StrEnum):
    """What a script file is; its name's first letter."""

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
    """SHA-256 of the script with line endings normalised, so a CRLF checkout is not an edit."""
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


def load_scripts(directory: str | Path) -> list[Script]:
    """Read every *.sql file below `directory` (hidden entries skipped), validated as a set."""
    root = Path(directory)
    if not root.is_dir():
        raise UsageError(f"migrations directory {root} does not exist (set --dir or LOCKGATE_MIGRATIONS_DIR)")
    paths = sorted(
        p for p in root.rglob("*.sql") if not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    problems: list[str] = []
    scripts: list[Script] = []
    for path in paths:
        try:
            kind, version, description = parse_name(path.name)
            sql = path.read_text(encoding="utf-8")
        except (ValueError, UnicodeDecodeError) as exc:
            problems.append(f"{path.relative_to(root)}: {exc}" if isinstance(exc, UnicodeDecodeError) else str(exc))
            continue
        scripts.append(Script(kind, version, description, path.name, sql, checksum(sql)))
    problems += _duplicates(scripts)
    if problems:
        raise ValidationRefused(problems)
    return scripts


def _duplicates(scripts: list[Script]) -> list[str]:
    seen: dict[tuple[Kind, Version | str | None], str] = {}
    problems = []
    for script in scripts:
        key = (script.kind, script.version if script.version else script.description)
        if key in seen:
            problems.append(f"{script.name} and {seen[key]} have the same {script.kind.value} version: rename one")
        seen[key] = script.name
    return problems

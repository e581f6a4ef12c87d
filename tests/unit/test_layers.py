"""The layers of lockgate, checked by reading every module's imports (no import is executed).

- shared/ (versions, phases, report, errors, redaction, timestamps) depends on nothing else of lockgate;
- the runner never imports kubernetes, kopf, the controller or the CLI;
- the controller never imports the runner or the CLI;
- the pure modules (each says "(pure)" in its docstring) import no I/O at all;
- the CLI is the only place where runner and controller meet.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "operator"
PACKAGE = ROOT / "lockgate"
IO = {
    "kubernetes",
    "kopf",
    "sqlalchemy",
    "psycopg",
    "requests",
    "os",
    "subprocess",
    "socket",
    "asyncio",
    "prometheus_client",
    "urllib",
    "http",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Absolute names of every module `path` imports, wherever in the file (lazy imports too)."""
    package = module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)  # `from . import x` names a module
    return found


MODULES = {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def declared_pure(path: Path) -> bool:
    """A module declares itself pure by saying so, "(pure)", in its docstring's first paragraph."""
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    return "(pure)" in docstring.split("\n\n")[0]


PURE = [module_name(p) for p in sorted(PACKAGE.rglob("*.py")) if declared_pure(p)]
DOCS = ROOT.parent / "docs" / "architecture.md"


def offending(module: str, forbidden: set[str]) -> list[str]:
    return sorted(i for i in MODULES[module] if any(i == f or i.startswith(f + ".") for f in forbidden))


def of(package: str) -> list[str]:
    return [m for m in MODULES if m == package or m.startswith(package + ".")]


def test_operator_is_not_a_package() -> None:
    assert not (ROOT / "__init__.py").exists(), "operator/ must not be a package: the stdlib has a module `operator`"


def test_the_import_walk_sees_relative_imports() -> None:
    assert "lockgate.shared.versions" in MODULES["lockgate.controller.ledger"]
    assert "lockgate.controller.run" in MODULES["lockgate.cli.commands"]  # a lazy import


@pytest.mark.parametrize("module", of("lockgate.shared"))
def test_shared_depends_on_nothing_else_of_lockgate(module: str) -> None:
    assert offending(module, {"lockgate.runner", "lockgate.controller", "lockgate.cli", "kubernetes", "kopf"}) == []


@pytest.mark.parametrize("module", of("lockgate.runner"))
def test_the_runner_never_imports_the_cluster_side(module: str) -> None:
    assert offending(module, {"kubernetes", "kopf", "lockgate.controller", "lockgate.cli"}) == []


def test_no_module_imports_sqlalchemy() -> None:
    """The runner reaches its databases through the drivers (runner/connection.py): SQLAlchemy is
    a test dependency only, not in the image."""
    assert [m for m in MODULES if offending(m, {"sqlalchemy"})] == []


@pytest.mark.parametrize("module", of("lockgate.controller"))
def test_the_controller_never_imports_the_runner(module: str) -> None:
    assert offending(module, {"lockgate.runner", "lockgate.cli"}) == []


@pytest.mark.parametrize("module", PURE)
def test_decision_modules_do_no_io(module: str) -> None:
    assert offending(module, IO) == []


def test_the_decision_cores_declare_themselves_pure() -> None:
    cores = {
        "lockgate.controller.decide",
        "lockgate.controller.ledger",
        "lockgate.runner.plan",
        "lockgate.shared.phases",
    }
    assert cores <= set(PURE)


@pytest.mark.parametrize(
    "path",
    [p.relative_to(PACKAGE).as_posix() for p in sorted(PACKAGE.glob("*/**/*.py")) if not p.name.startswith("__")],
)
def test_the_architecture_map_names_every_module(path: str) -> None:
    """docs/architecture.md is the map a newcomer reads first: every room must be on it."""
    assert f"`{path}`" in DOCS.read_text(), f"docs/architecture.md does not name `{path}`: add it to the rule table"


def test_only_the_cli_meets_both_halves() -> None:
    meeting = [
        m for m, found in MODULES.items() if offending(m, {"lockgate.runner"}) and offending(m, {"lockgate.controller"})
    ]
    assert meeting and all(m.startswith("lockgate.cli") for m in meeting), meeting


def test_no_two_modules_import_each_other() -> None:
    """An import loop hides which of two modules stands below the other (database <-> lock was one)."""
    ours = set(MODULES)
    loops = sorted(
        (a, b) for a in ours for b in MODULES[a] & ours if a < b and a in MODULES[b] and not b.startswith(a + ".")
    )
    assert loops == []

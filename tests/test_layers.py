"""The layers of lockgate, checked by reading every module's imports (no import is executed).

- shared/ (versions, phases, report, errors, redaction) depends on nothing else of lockgate;
- the runner never imports kubernetes, kopf, the controller or the CLI;
- the controller never imports the runner or the CLI;
- the pure decision modules import no I/O at all;
- the CLI is the only place where runner and controller meet.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "operator"
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
PURE = [
    "lockgate.shared.versions",
    "lockgate.shared.phases",
    "lockgate.shared.report",
    "lockgate.shared.redaction",
    "lockgate.shared.errors",
    "lockgate.runner.history",
    "lockgate.runner.plan",
    "lockgate.runner.pooler",
    "lockgate.runner.lint",
    "lockgate.runner.lint_objects",
    "lockgate.runner.statements",
    "lockgate.runner.summary",
    "lockgate.controller.decide",
    "lockgate.controller.ledger",
    "lockgate.controller.phase_plan",
    "lockgate.controller.rollout",
    "lockgate.controller.gate",
    "lockgate.controller.status",
    "lockgate.controller.conditions",
    "lockgate.controller.events",
    "lockgate.controller.observed",
    "lockgate.controller.spec",
    "lockgate.controller.manifests",
]


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


@pytest.mark.parametrize("module", of("lockgate.controller"))
def test_the_controller_never_imports_the_runner(module: str) -> None:
    assert offending(module, {"lockgate.runner", "lockgate.cli"}) == []


@pytest.mark.parametrize("module", PURE)
def test_decision_modules_do_no_io(module: str) -> None:
    assert offending(module, IO) == []


def test_only_the_cli_meets_both_halves() -> None:
    meeting = [
        m for m, found in MODULES.items() if offending(m, {"lockgate.runner"}) and offending(m, {"lockgate.controller"})
    ]
    assert meeting and all(m.startswith("lockgate.cli") for m in meeting), meeting

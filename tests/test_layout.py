"""The package layout's dependency rules: each package imports only the packages below it.

Read from the source with :mod:`ast` (imports inside functions and ``TYPE_CHECKING`` blocks
count too), so a new upward import fails here before it becomes an import cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "promptrec"

# package -> the promptrec packages it may import (besides itself). The direction reads bottom-up:
# events, encoder, index, broker and observability import no other promptrec package; the
# Kafka-free serving domain sits on encoder + index + events; streams (Faust, Kafka) on serving;
# evaluation, demo and the CLI on top.
ALLOWED: dict[str, set[str]] = {
    "events": set(),
    "encoder": set(),
    "index": set(),
    "broker": set(),
    "observability": set(),
    "serving": {"events", "encoder", "index"},
    "streams": {"events", "encoder", "index", "serving", "observability"},
    "demo": {"broker", "events", "streams"},
    "evaluation": {"broker", "encoder", "events", "index", "observability", "serving", "streams"},
    "cli": {
        "broker",
        "demo",
        "encoder",
        "evaluation",
        "events",
        "index",
        "observability",
        "serving",
        "streams",
    },
}
# Top-level modules of promptrec (``python -m promptrec``) may import anything.
TOP_LEVEL = {"__init__", "__main__"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _package(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def test_every_package_has_a_rule() -> None:
    packages = {_package(p) for p in _modules()} - TOP_LEVEL
    assert packages == set(ALLOWED), "add the new package to ALLOWED with its allowed imports"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path: Path) -> None:
    own = _package(path)
    if own in TOP_LEVEL:
        return
    for line, module in _imports(path):
        parts = module.split(".")
        if parts[0] == "bench":
            raise AssertionError(f"{path}:{line}: the installed package imports bench")
        if parts[0] != "promptrec" or len(parts) < 2 or parts[1] == own:
            continue
        assert parts[1] in ALLOWED[own], (
            f"{path.relative_to(ROOT)}:{line}: {own} imports {module}; "
            f"{own} may import only {sorted(ALLOWED[own]) or 'no other promptrec package'}"
        )


def test_rules_have_no_cycle() -> None:
    seen: dict[str, int] = {}

    def visit(name: str, stack: tuple[str, ...]) -> None:
        assert name not in stack, f"cycle: {' -> '.join((*stack, name))}"
        if seen.get(name):
            return
        for dep in ALLOWED[name]:
            visit(dep, (*stack, name))
        seen[name] = 1

    for name in ALLOWED:
        visit(name, ())


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from promptrec.streams.agents import Pipeline\n")
    assert (2, "promptrec.streams.agents") in _imports(bad)

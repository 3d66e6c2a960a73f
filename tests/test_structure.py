"""The package's structure, drawn from its code: every ``import`` of ``pytest_attnfaith`` read with ``ast`` (module
level, inside functions and under ``TYPE_CHECKING`` alike), then the layering rules of DESIGN.md checked on the
graph: no import runs back up a layer, no cycle, no module above 500 lines, no adapter importing the options."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest_attnfaith

ROOT = Path(pytest_attnfaith.__file__).parent
MAX_LINES = 500
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "formatting", "_recording", "progress"),
    ("options", "results", "worst"),
    ("metrics",),
    ("adapters",),
    ("session",),
    ("explainers",),
    ("checks",),
    ("head_atlas", "audit", "explanation_audit"),
    ("assertions",),
    ("report",),
    ("plugin", "cli", "demo", "strategies", "zoo", ""),
)
"""Bottom to top: a module may import its own layer and the layers below (``""``: the package's ``__init__``)."""


def module_names() -> dict[str, Path]:
    """Dotted name (``adapters.base``; ``""`` for the package itself) → source file."""
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports (``from package import submodule`` counts as the submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(local for alias in node.names if (local := _local(alias.name)) in known)
        elif isinstance(node, ast.ImportFrom):
            module = _local(node.module or "") if not node.level else _relative(package, node.level, node.module)
            if module is None:
                continue
            for alias in node.names:
                submodule = f"{module}.{alias.name}".lstrip(".")
                found.add(submodule if submodule in known else module)
    found.discard(name)
    return found & known


def _local(dotted: str) -> str | None:
    """``pytest_attnfaith.a.b`` → ``a.b`` (the package itself: ``""``); None outside the package."""
    if dotted == "pytest_attnfaith":
        return ""
    return dotted.removeprefix("pytest_attnfaith.") if dotted.startswith("pytest_attnfaith.") else None


def _relative(package: str, level: int, module: str | None) -> str:
    parts = package.split(".") if package else []
    return ".".join([*parts[: len(parts) - level + 1], *([module] if module else [])])


def import_graph() -> dict[str, set[str]]:
    names = module_names()
    return {name: imports_of(name, path, set(names)) for name, path in names.items()}


def layer_of(name: str) -> int:
    top = name.split(".")[0]
    for index, layer in enumerate(LAYERS):
        if top in layer:
            return index
    raise AssertionError(f"module {name!r} belongs to no layer of LAYERS; place it in one")


def test_every_module_has_a_layer_and_no_import_runs_up() -> None:
    upward = [
        f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})"
        for name, targets in import_graph().items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(name)
    ]
    assert upward == []


def test_no_import_cycle() -> None:
    graph = import_graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_no_module_above_500_lines() -> None:
    long = {name: n for name, path in module_names().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_no_adapter_imports_the_options() -> None:
    graph = import_graph()
    assert [name for name in graph if name.startswith("adapters") and "options" in graph[name]] == []


def test_the_graph_sees_imports_inside_functions_and_type_checking_blocks(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pytest_attnfaith.results import Report\n"
        "def f():\n    from pytest_attnfaith.report import html\n    import pytest_attnfaith.options\n"
        "from pytest_attnfaith.adapters import hf_fast, Batch\n"
    )
    found = imports_of("errors", source, set(module_names()))
    assert found == {"results", "report.html", "options", "adapters.hf_fast", "adapters"}


def test_the_adapters_reading_defaults_are_the_options_defaults() -> None:
    from pytest_attnfaith.adapters.reading import Reading
    from pytest_attnfaith.options import Options

    assert Reading() == Reading.of(Options())

"""The layers go one way: every import read from the source (module level, inside functions and under
TYPE_CHECKING) points to the module's own layer or below, and no modules import each other in a circle.

docs/architecture.md draws the layers; a module outside every layer fails here until it is placed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import xlspt

SOURCE = Path(xlspt.__file__).parent
#: Bottom to top; a module belongs to the longest prefix that names it.
LAYERS = [
    ["xlspt._version", "xlspt.errors", "xlspt.files", "xlspt.progress", "xlspt.logs", "xlspt.layout", "xlspt.network"],
    ["xlspt.data", "xlspt.models"],
    ["xlspt.engine"],
    ["xlspt.soft_prompt", "xlspt.verbalizer", "xlspt.calibration", "xlspt.lora"],
    ["xlspt.train", "xlspt.evaluate", "xlspt.results", "xlspt.probe_readout"],
    ["xlspt.artifact", "xlspt.sidecar", "xlspt.card", "xlspt.hub"],
    ["xlspt.classifiers"],
    ["xlspt.study", "xlspt.pipeline", "xlspt.serve", "xlspt.corpus"],
    ["xlspt.report"],
    ["xlspt.cli", "xlspt"],
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Each module's xlspt modules imported anywhere in its source (``from .x import y`` names ``x.y`` if a module)."""
    modules = {module_name(p): p for p in SOURCE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else [])) if node.level else (node.module or "")
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    found.add(full if full in modules else target)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        edges[name] = {t for t in found if t.split(".")[0] == "xlspt" and t != name}
    return edges


def layer_of(name: str) -> int | None:
    matches = [(len(prefix), i) for i, names in enumerate(LAYERS) for prefix in names
               if name == prefix or name.startswith(prefix + ".")]
    return max(matches)[1] if matches else None


def test_every_module_has_a_layer():
    assert [name for name in imports() if layer_of(name) is None] == []


def test_no_import_points_upward():
    upward = [(name, target) for name, targets in imports().items() for target in targets
              if layer_of(target) > layer_of(name)]
    assert upward == []


def test_no_modules_import_each_other_in_a_circle():
    edges = imports()
    cycles, state = [], {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(edges.get(name, ())):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[name] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_checker_sees_imports_inside_functions_and_under_type_checking(tmp_path):
    tree = ast.parse("import typing\nif typing.TYPE_CHECKING:\n    from .a import b\ndef f():\n    from ..c import d\n")
    found = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert [(n.module, n.level) for n in found] == [("a", 1), ("c", 2)]
    edges = imports()  # in the source: imports found only under TYPE_CHECKING, and only inside methods
    assert "xlspt.models.loading" in edges["xlspt.classifiers.base"]
    assert "xlspt.hub" in edges["xlspt.classifiers.saving"]

"""The package's import graph: no cycle, and the library imports nothing from the application parts.

Every ``import`` statement of every module under ``maedfer/`` counts, module-level or inside a function; running a
parent package's ``__init__`` on the way to a submodule is not an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "maedfer"
#: The parts built on the library; the rest of ``maedfer`` is the library.
APPLICATION_PARTS = ("maedfer.apps", "maedfer.preprocess", "maedfer.synthetic", "maedfer.parity")


def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``package`` (a package is named by its folder)."""
    modules = {}
    for file in sorted(package.rglob("*.py")):
        parts = list(file.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = file
    return modules


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """``name`` or its closest enclosing module that exists (``pkg.mod.attr`` -> ``pkg.mod``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    modules = module_files(package)
    root = package.name
    graph: dict[str, set[str]] = {}
    for name, file in modules.items():
        own_package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = own_package.split(".")[: len(own_package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # `from pkg import sub` imports the submodule `pkg.sub`; `from mod import name` imports `mod`.
                targets.update(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                               for alias in node.names)
        graph[name] = {
            known for target in targets
            if (target == root or target.startswith(root + ".")) and (known := _known(target, modules)) != name
            and known is not None
        }
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def is_application(module: str, parts: tuple[str, ...] = APPLICATION_PARTS) -> bool:
    return any(module == part or module.startswith(part + ".") for part in parts)


def library_violations(graph: dict[str, set[str]], parts: tuple[str, ...] = APPLICATION_PARTS) -> list[str]:
    """``library -> application`` edges."""
    return sorted(
        f"{module} -> {target}"
        for module, targets in graph.items() if not is_application(module, parts)
        for target in targets if is_application(target, parts)
    )


def test_the_graph_sees_every_kind_of_import() -> None:
    graph = import_graph(PACKAGE)
    assert "maedfer.registry" in graph and "maedfer.apps.train" in graph
    assert "maedfer.models.zoo" in graph["maedfer"]  # `from .models import zoo`: the submodule
    assert "maedfer.synthetic" in graph["maedfer.apps.experiment"]  # inside a function


def test_the_package_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph(PACKAGE))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_registry_is_a_leaf() -> None:
    graph = import_graph(PACKAGE)
    assert not any(target.startswith("maedfer.models") for target in graph["maedfer.registry"])


def test_the_library_imports_nothing_from_the_applications() -> None:
    assert library_violations(import_graph(PACKAGE)) == []


def test_the_checks_catch_a_cycle_and_a_library_import_of_an_application(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "apps").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "apps" / "__init__.py").write_text("")
    (package / "apps" / "run.py").write_text("from .. import core\n")
    (package / "apps" / "report.py").write_text("")
    (package / "core.py").write_text("def f():\n    from .helpers import g\n")
    (package / "helpers.py").write_text("import pkg.core\nfrom pkg.apps.report import main\n")
    graph = import_graph(package)
    assert graph["pkg.apps.run"] == {"pkg.core"}
    assert find_cycle(graph) == ["pkg.core", "pkg.helpers", "pkg.core"]
    assert library_violations(graph, ("pkg.apps",)) == ["pkg.helpers -> pkg.apps.report"]

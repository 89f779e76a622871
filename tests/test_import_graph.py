"""Imports go one way: no cycle between ldcsf's packages, and none between its files.

Every module under src/ldcsf is parsed with `ast`: every import counts, also those inside
functions and relative ones. A package is a top-level subpackage or top-level module of ldcsf
(`training`, `evaluation`, `checkpoint`, ...); its `__init__` re-exports count as that package.
`ldcsf/__init__.py` (the lazy public API) and `cli/` may import everything, so they are left out
of the package graph.
"""

from __future__ import annotations

import ast
import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
#: Entry points allowed to import anything (nothing imports them back), besides the root package.
ENTRY_POINTS = {"cli"}


def module_files(src: Path, root: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under src/root (a package's name is its __init__)."""
    files = {}
    for path in sorted((src / root).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def imported_modules(name: str, path: Path, modules: set[str]) -> set[str]:
    """The modules of `modules` that the file imports anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from pkg import name`: the submodule pkg.name when there is one, else pkg itself.
            candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for candidate in candidates:
            # `import a.b.c` names a.b.c; stop at the longest prefix that is one of ours.
            while candidate and candidate not in modules:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                found.add(candidate)
    return found


def import_graph(src: Path, root: str) -> dict[str, set[str]]:
    """module -> the modules it imports (both dotted names of files under src/root)."""
    files = module_files(src, root)
    return {name: imported_modules(name, path, set(files)) for name, path in files.items()}


def package_of(module: str, root: str) -> str:
    """`ldcsf.training.module` -> `training`; `ldcsf.checkpoint` -> `checkpoint`; `ldcsf` -> `ldcsf`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else root


def package_graph(graph: dict[str, set[str]], root: str) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        source = package_of(module, root)
        if source in ENTRY_POINTS or source == root:
            continue
        edges = packages.setdefault(source, set())
        edges |= {package_of(t, root) for t in targets} - {source, root}
    return packages


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles of `graph`, each as a path ending where it starts; empty when the graph is acyclic.

    graphlib reports one cycle at a time: each found cycle loses one edge and the search goes on,
    so every independent cycle is listed (not every combination of them).
    """
    graph = {node: set(edges) for node, edges in graph.items()}
    cycles = []
    while True:
        try:
            TopologicalSorter(graph).prepare()
            return cycles
        except CycleError as err:
            cycle = list(reversed(err.args[1]))  # graphlib lists it against the import direction
            cycles.append(cycle)
            graph[cycle[0]].discard(cycle[1])


def describe(cycles: list[list[str]]) -> str:
    return "\n".join(" -> ".join(cycle) for cycle in cycles)


@pytest.fixture(scope="module")
def ldcsf_graph() -> dict[str, set[str]]:
    return import_graph(SRC, "ldcsf")


def test_no_cycle_between_packages(ldcsf_graph):
    cycles = find_cycles(package_graph(ldcsf_graph, "ldcsf"))
    assert not cycles, f"import cycles between ldcsf packages:\n{describe(cycles)}"


def test_no_cycle_between_files(ldcsf_graph):
    cycles = find_cycles(ldcsf_graph)
    assert not cycles, f"import cycles between ldcsf files:\n{describe(cycles)}"


def test_graph_sees_every_kind_of_import(tmp_path):
    """The checker itself: relative, absolute, in-function and `from pkg import module` imports all count."""
    pkg = tmp_path / "demo"
    (pkg / "low").mkdir(parents=True)
    (pkg / "high").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "__init__.py").write_text("from .base import thing\n")
    (pkg / "low" / "base.py").write_text("def thing():\n    from ..high import user\n    return user\n")
    (pkg / "high" / "__init__.py").write_text("")
    (pkg / "high" / "user.py").write_text("import demo.low.base\nfrom demo import low\n")
    (pkg / "top.py").write_text("from .high.user import x\n")

    graph = import_graph(tmp_path, "demo")
    assert graph["demo.low.base"] == {"demo.high.user"}
    assert graph["demo.high.user"] == {"demo.low.base", "demo.low"}
    assert graph["demo.low"] == {"demo.low.base"}
    assert graph["demo.top"] == {"demo.high.user"}
    assert package_graph(graph, "demo") == {"low": {"high"}, "high": {"low"}, "top": {"high"}}

    file_cycles = find_cycles(graph)  # user -> low.base -> user, and user -> low -> low.base -> user
    assert file_cycles and all({"demo.low.base", "demo.high.user"} <= set(c) for c in file_cycles)
    assert all(c[0] == c[-1] for c in file_cycles)
    assert {tuple(sorted(set(c))) for c in find_cycles(package_graph(graph, "demo"))} == {("high", "low")}

    # Moving the late import out of the low package breaks both cycles.
    (pkg / "low" / "base.py").write_text("def thing():\n    return 1\n")
    graph = import_graph(tmp_path, "demo")
    assert find_cycles(graph) == [] and find_cycles(package_graph(graph, "demo")) == []


ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def documented_floor_order(doc: Path = ARCHITECTURE) -> list[str]:
    """The packages in the order docs/architecture.md's numbered list under "Imports go one way" gives."""
    section = doc.read_text().split("## Imports go one way", 1)[1].split("\n## ", 1)[0]
    order = []
    for line in section.splitlines():
        if re.match(r"\d+\. ", line):
            # Backticked names before the first parenthesis: the packages on that floor, in order.
            order += [name for name in re.findall(r"`([\w/]+)`", line.split("(")[0]) if name != "ldcsf/__init__"]
    return order


def wrong_way_imports(packages: dict[str, set[str]], order: list[str]) -> list[str]:
    """'a -> b' for every package import that goes to a package listed after (or not before) a."""
    rank = {name: i for i, name in enumerate(order)}
    return sorted(f"{a} -> {b}" for a, targets in packages.items() for b in targets
                  if a in rank and b in rank and rank[b] >= rank[a])


def test_every_package_has_a_documented_floor(ldcsf_graph):
    order = documented_floor_order()
    missing = sorted(set(package_graph(ldcsf_graph, "ldcsf")) - set(order))
    assert not missing, f"packages without a floor in docs/architecture.md: {missing}"
    assert len(order) == len(set(order)), f"a package is listed twice: {order}"


def test_imports_follow_the_documented_floor_order(ldcsf_graph):
    order = [name for name in documented_floor_order() if name not in ENTRY_POINTS]
    wrong = wrong_way_imports(package_graph(ldcsf_graph, "ldcsf"), order)
    assert not wrong, "imports against the floor order of docs/architecture.md:\n" + "\n".join(wrong)


def test_floor_order_check_fails_on_a_wrong_way_import(tmp_path):
    """The checker itself: an upward import with no cycle is caught; the same import downward is not."""
    pkg = tmp_path / "demo"
    for name in ("low", "high"):
        (pkg / name).mkdir(parents=True)
        (pkg / name / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "base.py").write_text("def thing():\n    from ..high import user\n")
    (pkg / "high" / "user.py").write_text("x = 1\n")
    packages = package_graph(import_graph(tmp_path, "demo"), "demo")
    assert find_cycles(packages) == []  # no cycle: only the floor order catches it
    assert wrong_way_imports(packages, ["low", "high"]) == ["low -> high"]
    assert wrong_way_imports(packages, ["high", "low"]) == []
    doc = tmp_path / "architecture.md"
    doc.write_text("## Imports go one way\n\n1. `low`, then `high` (`low` is read first)\n2. `top`\n\n## Next\n1. `no`\n")
    assert documented_floor_order(doc) == ["low", "high", "top"]


def test_labels_sit_at_the_bottom_and_data_reads_them(ldcsf_graph):
    """`ldcsf.labels` imports nothing of ldcsf; `data` learns label names from it, not from `models`."""
    assert ldcsf_graph["ldcsf.labels"] == set()
    data_to_models = sorted(f"{m} -> {t}" for m, targets in ldcsf_graph.items() if package_of(m, "ldcsf") == "data"
                            for t in targets if package_of(t, "ldcsf") == "models")
    assert not data_to_models, "data imports the model package:\n" + "\n".join(data_to_models)
    assert "ldcsf.labels" in ldcsf_graph["ldcsf.data.manifest"]

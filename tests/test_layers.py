"""The packages stay layered and free of import cycles, read from the source (nothing is imported).

Layering: kernels < models < orchestrator < dashboards. A module-level import never reaches a higher
layer (models imports neither orchestrator nor dashboards, ...), and the module-level imports between the
repository's own modules form no cycle. Imports inside functions are allowed either way: that is how the
CLI defers heavy libraries (torch, plotly) and how a lower layer may call a higher one lazily. Imports under
`if TYPE_CHECKING:` never run and are not counted. migrations/ is outside the layering: not scanned, and
an import of it is not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("kernels", "models", "orchestrator", "dashboards")  # lowest first
RANK = {name: i for i, name in enumerate(LAYERS)}


class Import(NamedTuple):
    """One import statement at module level, names absolute (relative imports resolved)."""

    line: int
    statement: str  # as written (one line)
    targets: tuple[str, ...]  # `import a.b, c`: a.b and c; `from X import y, z`: X.y and X.z (maybe not modules)
    source: str | None = None  # `from X import ...`: X


def module_name(path: Path, root: Path = REPO) -> str:
    """`orchestrator/store/engine.py` -> `orchestrator.store.engine`; a package's `__init__.py` -> the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def repository_sources(root: Path = REPO) -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, whether it is a package's `__init__.py`) for every module of the layers."""
    found = {}
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            if "__pycache__" not in path.parts:
                found[module_name(path, root)] = (path, path.name == "__init__.py")
    return found


def is_type_checking(test: ast.expr) -> bool:
    """`TYPE_CHECKING` or `typing.TYPE_CHECKING` (an `if` whose body never runs)."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_statements(body: list[ast.stmt]):
    """The statements that run when the module is imported: the top level and the blocks inside it (if, try,
    with, loops, class bodies), but not function bodies nor the body of `if TYPE_CHECKING:`."""
    for node in body:
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.If):
            if not is_type_checking(node.test):
                yield from module_level_statements(node.body)
            yield from module_level_statements(node.orelse)
            continue
        for field in ("body", "orelse", "finalbody"):
            yield from module_level_statements(getattr(node, field, None) or [])
        for handler in getattr(node, "handlers", None) or []:
            yield from module_level_statements(handler.body)
        for case in getattr(node, "cases", None) or []:
            yield from module_level_statements(case.body)


def resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of `from {'.' * level}{target} import ...` written in `module`."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 >= len(package):
        raise ValueError(f"{module}: relative import beyond the top-level package")
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def module_imports(module: str, source: str, is_package: bool = False, filename: str = "<source>") -> list[Import]:
    """The import statements of the source that run at module level."""
    found: list[Import] = []
    for node in module_level_statements(ast.parse(source, filename=filename).body):
        if isinstance(node, ast.Import):
            found.append(Import(node.lineno, ast.unparse(node), tuple(alias.name for alias in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = resolve_relative(module, is_package, node.level, node.module) if node.level else node.module
            names = tuple(f"{base}.{alias.name}" for alias in node.names)
            found.append(Import(node.lineno, ast.unparse(node), names, base))
    return found


def layer_of(name: str) -> str | None:
    top = name.split(".")[0]
    return top if top in RANK else None


def layer_violations(imports: dict[str, list[Import]], files: dict[str, str] | None = None) -> list[str]:
    """One line per module-level import that goes up the layering."""
    problems = []
    for module, found in sorted(imports.items()):
        own = layer_of(module)
        for imp in found:
            names = (imp.source,) if imp.source else imp.targets
            for theirs in sorted({layer_of(name) for name in names} - {None}, key=RANK.get):
                if own is None or RANK[theirs] <= RANK[own]:
                    continue
                where = (files or {}).get(module, module)
                problems.append(
                    f"{where}:{imp.line}: module {module} imports {theirs} at module level (`{imp.statement}`); "
                    f"{own} sits below {theirs} in {' < '.join(LAYERS)}: import it inside the function that needs it"
                )
    return problems


def longest_known(name: str, known: set[str]) -> str | None:
    """`a.b.c` -> the first of a.b.c, a.b, a that is a repository module (None: none is)."""
    parts = name.split(".")
    return next((p for p in (".".join(parts[:n]) for n in range(len(parts), 0, -1)) if p in known), None)


def own_edges(imports: dict[str, list[Import]]) -> dict[str, dict[str, tuple[int, str]]]:
    """Module -> the repository modules it imports at module level -> (line, statement).

    `import a.b.c` is an edge to the longest known module among a.b.c, a.b, a. `from X import y` is an edge
    to X.y where that is a module, and to X only where some name is not a submodule (an attribute of X, so
    X must have run): `from . import sibling` inside a package does not depend on the package's
    `__init__.py` having finished. A module never depends on itself."""
    known = set(imports)
    edges: dict[str, dict[str, tuple[int, str]]] = {}
    for module, found in imports.items():
        out = edges.setdefault(module, {})
        for imp in found:
            if imp.source is not None:
                picked = [t for t in imp.targets if t in known]
                if len(picked) < len(imp.targets):
                    picked.append(imp.source)
            else:
                picked = [longest_known(target, known) for target in imp.targets]
            for target in picked:
                if target in known and target != module:
                    out.setdefault(target, (imp.line, imp.statement))
    return edges


def find_cycle(graph: dict[str, dict[str, object]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (depth-first, in sorted order: deterministic)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def describe_cycle(cycle: list[str], edges: dict[str, dict[str, tuple[int, str]]], files: dict[str, str]) -> str:
    steps = [
        f"  {a} -> {b}  ({files.get(a, a)}:{edges[a][b][0]}: `{edges[a][b][1]}`)"
        for a, b in zip(cycle, cycle[1:], strict=False)
    ]
    return (
        "import cycle among module-level imports:\n"
        + "\n".join(steps)
        + "\nbreak it: move what both sides need into a lower module, or import inside the function that needs it"
    )


def repository_imports() -> tuple[dict[str, list[Import]], dict[str, str]]:
    imports, files = {}, {}
    for module, (path, is_package) in repository_sources().items():
        files[module] = str(path.relative_to(REPO))
        imports[module] = module_imports(module, path.read_text(encoding="utf-8"), is_package, files[module])
    return imports, files


# --- the repository


def test_scan_sees_the_layers():
    imports, _ = repository_imports()
    assert {layer_of(m) for m in imports} == set(LAYERS)
    assert "dashboards.report" in imports and "orchestrator.store.engine" in imports and "models" in imports
    assert not any(m.startswith("migrations") for m in imports)


def test_module_level_imports_never_go_up_the_layering():
    imports, files = repository_imports()
    problems = layer_violations(imports, files)
    if problems:
        pytest.fail("module-level imports going up the layering:\n" + "\n".join(problems), pytrace=False)


def test_no_import_cycle_among_module_level_imports():
    imports, files = repository_imports()
    edges = own_edges(imports)
    cycle = find_cycle(edges)
    if cycle:
        pytest.fail(describe_cycle(cycle, edges, files), pytrace=False)


# --- the checks themselves, on synthetic modules


def synthetic(sources: dict[str, str]) -> dict[str, list[Import]]:
    """Module name (a trailing `/` marks a package's __init__) -> its imports."""
    return {
        name.rstrip("/"): module_imports(name.rstrip("/"), src, name.endswith("/")) for name, src in sources.items()
    }


def test_relative_imports_resolve():
    assert resolve_relative("dashboards.memory", False, 1, "report") == "dashboards.report"
    assert resolve_relative("dashboards.memory", False, 1, None) == "dashboards"
    assert resolve_relative("models", True, 1, "catalog") == "models.catalog"
    assert resolve_relative("orchestrator.store.engine", False, 2, "errors") == "orchestrator.errors"
    assert resolve_relative("orchestrator.store", True, 2, "spec") == "orchestrator.spec"


def test_an_upward_import_is_reported_with_module_line_and_statement():
    imports = synthetic(
        {
            "models.x": "import torch\n\nfrom orchestrator.spec import Spec\n",
            "kernels.k": "from models import config\n",
            "orchestrator.o": "from dashboards.report import build_html\nfrom models import config\n",
            "dashboards.d": "from orchestrator import api\nfrom migrations import env\n",
        }
    )
    problems = layer_violations(imports, {"models.x": "models/x.py"})
    assert len(problems) == 3, problems
    assert problems[0].startswith("kernels.k:1: module kernels.k imports models at module level")
    assert problems[1].startswith("models/x.py:3: module models.x imports orchestrator at module level")
    assert "`from orchestrator.spec import Spec`" in problems[1]
    assert problems[2].startswith("orchestrator.o:1: module orchestrator.o imports dashboards")


def test_imports_in_functions_and_under_type_checking_do_not_count():
    source = """
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from dashboards.report import build_html
else:
    import json
try:
    import orchestrator.spec
except ImportError:
    pass
def later():
    from dashboards import live
class Lazy:
    def method(self):
        import dashboards.report
"""
    imports = synthetic({"models.m": source})
    assert [imp.statement for imp in imports["models.m"]] == [
        "from typing import TYPE_CHECKING",
        "import json",
        "import orchestrator.spec",
    ]
    assert len(layer_violations(imports)) == 1  # the import under try: runs at import time


def test_a_cycle_is_found_and_named():
    imports = synthetic(
        {
            "dashboards/": "",
            "dashboards.report": "from . import memory\nfrom .common import GIB\n",
            "dashboards.memory": "from .scaling import latest\n",
            "dashboards.scaling": "import dashboards.report\n",
            "dashboards.common": "import html\n",
        }
    )
    edges = own_edges(imports)
    cycle = find_cycle(edges)
    assert cycle == ["dashboards.memory", "dashboards.scaling", "dashboards.report", "dashboards.memory"]
    message = describe_cycle(cycle, edges, {"dashboards.scaling": "dashboards/scaling.py"})
    assert "dashboards.scaling -> dashboards.report  (dashboards/scaling.py:1: `import dashboards.report`)" in message


def test_one_way_imports_and_submodule_imports_of_the_own_package_are_no_cycle():
    imports = synthetic(
        {
            "models/": "from .config import ConfigError\ndef __getattr__(name):\n    from . import catalog\n",
            "models.config": "import dataclasses\n",
            "models.catalog": "from . import seed, transformer\nfrom .config import knob\n",
            "models.seed": "from .config import ModelConfig\n",
            "models.transformer": "from .config import ModelConfig\nfrom .seed import Block\n",
        }
    )
    edges = own_edges(imports)
    assert edges["models.catalog"].keys() == {"models.seed", "models.transformer", "models.config"}
    assert find_cycle(edges) is None
    edges["models.config"]["models.catalog"] = (1, "from . import catalog")
    assert find_cycle(edges) == ["models.config", "models.catalog", "models.config"]

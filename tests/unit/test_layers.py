"""The layer contract, read from the source: `worker → adapters → models`, and the simulators apart.

Every import statement counts, at module level or inside a function (an import hidden in a
function is still a dependency, and the usual way a cycle hides). Relative imports are resolved
against the importing module's package, so `from ..worker import x` cannot slip past.

* `models` imports nothing else of ours; `adapters` imports `models` only.
* `sandbox` imports no `adapters` and no `worker`: the simulators are written from the providers'
  documents alone, so one side cannot hide the other's misreading.
* Nothing in production imports `sandbox` but the CLI's demo and sandbox commands: `worker.demo`
  (which only the CLI imports), and `worker.cli` inside the functions of those commands, so
  `bookingsync worker` and `bookingsync web` never load a simulator.
* Nobody imports our folders by their top-level names (`import models`).
* No `sandbox` module is in an import cycle (one hidden in a function counts), and no `sandbox`
  file is over 400 lines unless its docstring says why ("Over 400 lines for a reason: ...").
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("models", "adapters", "worker", "sandbox")
# Which of our folders each folder may import (besides itself).
ALLOWED = {
    "models": set(),
    "adapters": {"models"},
    "worker": {"models", "adapters"},
    "sandbox": {"models"},
}
# Production modules allowed to reach the simulators, and how.
SANDBOX_IMPORTERS = {"bookingsync.worker.demo": "anywhere", "bookingsync.worker.cli": "in a function"}


@dataclass(frozen=True)
class Import:
    importer: str  # bookingsync.worker.cli
    target: str  # bookingsync.sandbox.server
    line: int
    in_function: bool

    @property
    def where(self) -> str:
        return f"{self.importer} line {self.line} imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["bookingsync", *parts])


def _resolve(node: ast.ImportFrom, importer: str, is_package: bool) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    # `from . import x` may name a module: count `base.x` as well as `base`.
    return [base] + [f"{base}.{alias.name}" for alias in node.names if node.module is None]


def imports_of(path: Path) -> list[Import]:
    return imports_in(path.read_text(), module_name(path), is_package=path.name == "__init__.py")


def imports_in(source: str, importer: str, *, is_package: bool = False) -> list[Import]:
    tree = ast.parse(source)
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                found.extend(Import(importer, a.name, child.lineno, inside) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                found.extend(
                    Import(importer, t, child.lineno, inside) for t in _resolve(child, importer, is_package)
                )
            visit(child, inside)

    visit(tree, False)
    return found


@cache
def all_imports() -> tuple[Import, ...]:
    return tuple(
        i for folder in FOLDERS for path in sorted((REPO / folder).rglob("*.py")) for i in imports_of(path)
    )


def folder_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "bookingsync" and parts[1] in FOLDERS else None


def test_the_contract_sees_every_folder_and_their_imports():
    importers = {folder_of(i.importer) for i in all_imports()}
    assert importers == set(FOLDERS)
    # A parse that found no cross-folder import at all would make every rule below vacuous.
    assert any(folder_of(i.target) == "models" and folder_of(i.importer) == "worker" for i in all_imports())


def test_layers_point_one_way():
    broken = [
        i.where
        for i in all_imports()
        if (target := folder_of(i.target))
        and (source := folder_of(i.importer)) != target
        and target not in ALLOWED[source]
        and not (target == "sandbox" and i.importer in SANDBOX_IMPORTERS)
    ]
    assert broken == [], "imports against worker → adapters → models (sandbox apart):\n" + "\n".join(broken)


def test_only_the_cli_demo_reaches_the_simulators():
    reaching = [
        i for i in all_imports() if folder_of(i.target) == "sandbox" and folder_of(i.importer) != "sandbox"
    ]
    assert {i.importer for i in reaching} <= set(SANDBOX_IMPORTERS)
    eager = [
        i.where for i in reaching if SANDBOX_IMPORTERS[i.importer] == "in a function" and not i.in_function
    ]
    assert eager == [], "the CLI may load the simulators only inside the demo/sandbox commands"
    demo_users = [
        i.where
        for i in all_imports()
        if i.target == "bookingsync.worker.demo" and i.importer != "bookingsync.worker.cli"
    ]
    assert demo_users == []
    eager_demo = [
        i.where for i in all_imports() if i.target == "bookingsync.worker.demo" and not i.in_function
    ]
    assert eager_demo == []


def test_nothing_imports_our_folders_by_their_top_level_names():
    wrong = [i.where for i in all_imports() if i.target.split(".")[0] in FOLDERS]
    tests = [
        path
        for path in sorted((REPO / "tests").rglob("*.py")) + sorted((REPO / "bench").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and node.module.split(".")[0] in FOLDERS
        )
        or (isinstance(node, ast.Import) and any(a.name.split(".")[0] in FOLDERS for a in node.names))
    ]
    assert wrong == [] and tests == []


def test_the_parse_sees_relative_and_hidden_imports():
    # The checks above are only as good as the parse: a relative import across folders and an
    # import inside a function must both be seen, under their full names.
    hidden = imports_in("def f():\n    from ..sandbox import server\n", "bookingsync.adapters.leezy")
    assert [(i.target, i.in_function) for i in hidden] == [("bookingsync.sandbox", True)]
    package = imports_in(
        "from .schemas import X\nfrom .. import store\nimport bookingsync.models.tables\n",
        "bookingsync.worker.api",
        is_package=True,
    )
    assert [(i.target, i.in_function) for i in package] == [
        ("bookingsync.worker.api.schemas", False),
        ("bookingsync.worker", False),
        ("bookingsync.worker.store", False),
        ("bookingsync.models.tables", False),
    ]


# -- the simulators: no import cycles, small files ---------------------------------------------

# A sandbox file longer than this says why at its top, in these words.
MAX_LINES = 400
LONG_FILE_REASON = f"Over {MAX_LINES} lines for a reason:"


def module_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """Which of `sources`' modules each imports (anywhere in the file), from {module: (source,
    is_package)}. `from pkg import name` counts `pkg.name` too where that is a module, so
    `from bookingsync.sandbox import leezy` is an edge to the leezy package."""
    graph: dict[str, set[str]] = {}
    for module, (source, is_package) in sources.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                for base in _resolve(node, module, is_package)[:1]:
                    targets.add(base)
                    targets.update(f"{base}.{a.name}" for a in node.names)
        graph[module] = {t for t in targets if t in sources and t != module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each group of modules that import one another, directly or round a loop (Tarjan's
    strongly connected components with more than one member), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def too_long(files: dict[str, str]) -> list[str]:
    """The files of {name: source} over MAX_LINES lines whose docstring gives no reason."""
    return [
        f"{name}: {len(source.splitlines())} lines"
        for name, source in sorted(files.items())
        if len(source.splitlines()) > MAX_LINES
        and LONG_FILE_REASON not in (ast.get_docstring(ast.parse(source)) or "")
    ]


def sandbox_files() -> dict[Path, str]:
    return {path: path.read_text() for path in sorted((REPO / "sandbox").rglob("*.py"))}


def test_no_sandbox_module_is_in_an_import_cycle():
    sources = {module_name(p): (text, p.name == "__init__.py") for p, text in sandbox_files().items()}
    graph = module_graph(sources)
    # The graph must see the edges it exists for: a package's api importing its control module,
    # and the server reaching each simulator through `from bookingsync.sandbox import ...`.
    assert "bookingsync.sandbox.meetergo.control" in graph["bookingsync.sandbox.meetergo.api"]
    assert "bookingsync.sandbox.leezy" in graph["bookingsync.sandbox.server"]
    cycles = import_cycles(graph)
    assert cycles == [], "sandbox modules that import one another:\n" + "\n".join(map(str, cycles))


def test_sandbox_files_stay_small_or_say_why():
    files = {str(p.relative_to(REPO)): text for p, text in sandbox_files().items()}
    assert len(files) > 40  # the packages were found
    long = too_long(files)
    assert long == [], f"over {MAX_LINES} lines with no '{LONG_FILE_REASON}' in the docstring:\n" + "\n".join(
        long
    )


def test_the_cycle_and_size_checks_catch_what_they_are_for():
    # The old shape: the simulator imports its control module inside create_app, and the
    # control module imports the simulator back at the top.
    planted = {
        "bookingsync.sandbox.sim": (
            "def create_app():\n    from bookingsync.sandbox.sim_control import r\n",
            False,
        ),
        "bookingsync.sandbox.sim_control": ("from bookingsync.sandbox.sim import State\n", False),
        "bookingsync.sandbox.other": ("from bookingsync.sandbox import sim\n", False),
    }
    assert import_cycles(module_graph(planted)) == [
        ["bookingsync.sandbox.sim", "bookingsync.sandbox.sim_control"]
    ]
    # A package whose submodule imports the package back (through its __init__) is a loop too.
    package = {
        "bookingsync.sandbox.p": ("from .api import create_app\n", True),
        "bookingsync.sandbox.p.api": ("from .state import S\n", False),
        "bookingsync.sandbox.p.state": ("from bookingsync.sandbox.p import api\n", False),
    }
    assert import_cycles(module_graph(package)) == [
        ["bookingsync.sandbox.p", "bookingsync.sandbox.p.api", "bookingsync.sandbox.p.state"]
    ]
    long_body = "x = 1\n" * MAX_LINES
    assert too_long({"a.py": '"""A module."""\n' + long_body}) == [f"a.py: {MAX_LINES + 1} lines"]
    assert too_long({"b.py": f'"""A module.\n\n{LONG_FILE_REASON} it is one table."""\n' + long_body}) == []
    assert too_long({"c.py": long_body[: -len("x = 1\n")]}) == []
    # The reason must stand at the top, in the docstring, not anywhere in the file.
    hidden = '"""A module."""\n' + long_body + f"# {LONG_FILE_REASON} hidden at the end\n"
    assert too_long({"d.py": hidden}) == [f"d.py: {MAX_LINES + 2} lines"]

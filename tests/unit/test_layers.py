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

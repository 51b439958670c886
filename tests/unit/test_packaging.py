"""One name per module: `bookingsync.<folder>` resolves through the tree, and nothing else does.

`bookingsync/models`, `bookingsync/adapters`, `bookingsync/worker` and `bookingsync/sandbox` are
symbolic links to the top-level folders, so Python, type checkers and editors find
`bookingsync.worker.cli` in `worker/cli.py` by walking folders, with no import hook. The folders
refuse to be imported under their bare names (the repository root is on `sys.path` when tests
run), and every test folder is a package, so no module is ever loaded twice under two names.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("models", "adapters", "worker", "sandbox")


@pytest.mark.parametrize("folder", FOLDERS)
def test_the_package_tree_links_each_folder(folder):
    link = REPO / "bookingsync" / folder
    assert link.is_symlink() and link.resolve() == REPO / folder
    spec = importlib.util.find_spec(f"bookingsync.{folder}")
    assert spec is not None and spec.origin is not None
    assert Path(spec.origin).resolve() == REPO / folder / "__init__.py"


def test_bare_folder_names_do_not_import_from_the_repo_root():
    script = (
        "import importlib\n"
        "for name in ('models', 'adapters', 'worker', 'sandbox', 'models.tables'):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as exc:\n"
        "        print(name, '->', exc)\n"
        "    else:\n"
        "        print(name, 'IMPORTED')\n"
        "import bookingsync.models.tables\n"
        "print('bookingsync.models.tables ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "IMPORTED" not in out, out
    assert "'models' is the folder models/ of bookingsync: import it as bookingsync.models" in out
    assert "bookingsync.models.tables ok" in out


def test_every_test_folder_is_a_package():
    missing = [
        str(d.relative_to(REPO))
        for d in sorted({p.parent for p in (REPO / "tests").rglob("*.py")})
        if not (d / "__init__.py").exists()
    ]
    assert missing == []


def test_no_test_module_is_loaded_under_two_names():
    # A test folder without __init__.py would be imported as a top-level module by pytest and, if
    # another test imports it as tests.x.y, a second time under that name.
    by_file: dict[str, list[str]] = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and Path(path).resolve().is_relative_to(REPO) and ".venv" not in Path(path).parts:
            by_file.setdefault(str(Path(path).resolve()), []).append(name)
    assert any(path.endswith("tests/unit/test_packaging.py") for path in by_file)
    twice = {path: names for path, names in by_file.items() if len(names) > 1}
    assert twice == {}

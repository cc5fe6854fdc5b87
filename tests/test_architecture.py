"""The store stays free of the console, the UI and the network."""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = {"console", "textual", "httpx", "rich"}
STORE = Path(__file__).resolve().parents[1] / "store"


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_store_imports_no_console_ui_or_network():
    modules = sorted(STORE.rglob("*.py"))
    assert modules, "no store modules found"
    for module in modules:
        assert not imported_roots(module) & FORBIDDEN, module.name


def test_import_linter_contract_is_declared():
    pyproject = (STORE.parent / "pyproject.toml").read_text(encoding="utf-8")
    assert 'source_modules = ["store"]' in pyproject
    assert '"console", "textual", "httpx", "rich"' in pyproject


def test_import_linter_contract_is_kept():
    import subprocess
    import sys

    command = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(command)], cwd=STORE.parent, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout

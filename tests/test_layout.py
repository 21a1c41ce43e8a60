"""The package's architecture rules, read from the code itself: a torch-free core and one-way imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "finqa_dsl"


def _imported_modules(path: Path) -> set[str]:
    """Every module that ``path`` imports, at any depth (function-level imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _subpackage(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layout(path):
    imported = _imported_modules(path)
    own = _subpackage(path)
    assert not {name for name in imported if name.split(".")[0] == "scripts"}, "library imports the CLI layer"
    if own != "driver":
        assert not {n for n in imported if n.startswith("finqa_dsl.driver")}, "library imports the driver"
    if own in ("inference", "diffing"):
        assert not {n for n in imported if n.startswith("finqa_dsl.training")}, f"{own} imports training"
    if own == "core":
        outside = {n for n in imported if n.startswith("finqa_dsl.") and not n.startswith("finqa_dsl.core")}
        assert not outside, f"the core imports {outside}"


def test_the_core_imports_no_torch_or_transformers():
    modules = sorted(f"finqa_dsl.core.{p.stem}" for p in (PACKAGE / "core").glob("*.py") if p.stem != "__init__")
    code = (f"import sys\nfor name in {modules!r}:\n    __import__(name)\n"
            "print(sorted({'torch', 'transformers'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert len(modules) >= 8
    assert result.stdout.strip() == "[]"

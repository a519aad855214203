"""Every name a benchmark script imports from lrface exists: a moved function breaks the
script only when someone reruns a figure, long after the move (three did in the CLI split)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def lrface_imports(path: Path) -> list[tuple[str, str]]:
    """``(module, name)`` of each ``from lrface... import name`` in the script, nested too."""
    return [
        (node.module, alias.name)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lrface")
        for alias in node.names
    ]


@pytest.mark.parametrize("path", BENCHMARKS, ids=[p.name for p in BENCHMARKS])
def test_benchmark_imports_resolve(path):
    missing = [
        f"{module}.{name}"
        for module, name in lrface_imports(path)
        if not hasattr(importlib.import_module(module), name)
        and importlib.util.find_spec(f"{module}.{name}") is None
    ]
    assert not missing, f"{path.name} imports {missing}, which lrface no longer has"

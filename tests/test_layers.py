"""Imports run one way: the building blocks never reach up into what is built on them.

``data/``, ``detect/``, ``models/`` and ``losses/`` may import each other, never ``train/``,
``eval/``, ``search/``, ``pipeline``, ``pipeline_cli`` or the CLI. Imports are read from the
source with ``ast`` (function-level ones included), so the check needs no import to run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lrface

PACKAGE = Path(lrface.__file__).parent
LOWER = ("data", "detect", "models", "losses")
UPPER = ("train", "eval", "search", "pipeline", "pipeline_cli", "cli")


def imported_modules(source: str, module: str) -> list[str]:
    """Absolute names of every module ``source`` (the module ``module``) imports."""
    package = module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found += [base] if node.module else [f"{base}.{a.name}" for a in node.names]
    return found


def upward(names: list[str]) -> list[str]:
    return [n for n in names if n.split(".")[:2][-1] in UPPER and n.startswith("lrface.")]


def lower_modules() -> list[Path]:
    return sorted(p for layer in LOWER for p in (PACKAGE / layer).rglob("*.py"))


def test_checker_sees_every_form_of_upward_import():
    source = (
        "import lrface.train.engine\n"
        "from lrface.eval import protocol\n"
        "from .. import pipeline\n"
        "def f():\n    from ..search.gallery import Gallery\n"
        "from lrface.models.encoder import FaceEncoder\n"
        "from . import students\n"
    )
    names = imported_modules(source, "lrface.models.checkpoint")
    assert upward(names) == [
        "lrface.train.engine",
        "lrface.eval",
        "lrface.pipeline",
        "lrface.search.gallery",
    ]


@pytest.mark.parametrize("path", lower_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_building_blocks_do_not_import_upper_layers(path):
    module = "lrface." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    bad = upward(imported_modules(path.read_text(), module))
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}; move the shared code down"

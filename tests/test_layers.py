"""Imports run one way: every part of lrface has a place, and a module imports only from its own
place or below. Imports are read from the source with ``ast`` (function-level ones included),
so the check needs no import to run. There is no list of exceptions.

    ground (constants, registry, resize, vectors, paths, machine: nothing from lrface)
    -> models, detect, losses, search, calibration
    -> data -> pipeline, enrolment -> video, the public API -> eval -> train, service -> cli

Within ``cli/`` the command modules import ``cli.common`` and never each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lrface

PACKAGE = Path(lrface.__file__).parent
PLACES = {
    "constants": 0,
    "registry": 0,
    "resize": 0,
    "paths": 0,
    "machine": 0,
    "vectors": 0,
    "models": 1,
    "detect": 1,
    "losses": 1,
    "search": 1,
    "calibration": 1,
    "data": 2,
    "pipeline": 3,
    "enrolment": 3,
    "video": 4,
    "api": 4,
    "": 4,  # lrface/__init__.py: the public API's names
    "eval": 5,
    "train": 6,
    "service": 6,
    "cli": 7,
}


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


def place(name: str) -> str:
    """The part of lrface a module name belongs to (``""`` for the package itself)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward(module: str, names: list[str]) -> list[str]:
    """The imports of ``module`` that reach above its place."""
    level = PLACES[place(module)]
    return [n for n in names if n.startswith("lrface") and PLACES[place(n)] > level]


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append((".".join(("lrface", *parts)), path))
    return found


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
    assert upward("lrface.models.checkpoint", names) == [
        "lrface.train.engine",
        "lrface.eval",
        "lrface.pipeline",
    ]
    assert upward("lrface.constants", ["lrface.models.encoder", "numpy"]) == [
        "lrface.models.encoder"
    ]


def test_every_part_of_lrface_has_a_place():
    assert {place(name) for name, _ in modules()} <= set(PLACES)


@pytest.mark.parametrize("module,path", modules(), ids=[name for name, _ in modules()])
def test_no_module_imports_from_above_its_place(module, path):
    bad = upward(module, imported_modules(path.read_text(), module))
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}; move the shared code down"


def test_the_ground_floor_imports_nothing_from_lrface():
    for module, path in modules():
        if PLACES[place(module)] == 0:
            names = imported_modules(path.read_text(), module)
            assert not [n for n in names if n.startswith("lrface")], path


@pytest.mark.parametrize(
    "module,path",
    [(m, p) for m, p in modules() if place(m) == "cli" and m.count(".") == 2],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_command_modules_import_the_shared_one_never_each_other(module, path):
    if module in ("lrface.cli.app", "lrface.cli.__main__"):
        return  # the app registers every command module
    cli = [n for n in imported_modules(path.read_text(), module) if place(n) == "cli"]
    assert set(cli) <= {"lrface.cli.common"}, f"{module} imports {cli}"

"""The command line stays thin: every command's body (its signature of options aside) is at
most about 40 lines; the work is the library's."""

from __future__ import annotations

import ast
import inspect

import pytest

from lrface.cli import app

MAX_BODY_LINES = 40


def _commands():
    found = [c.callback for c in app.registered_commands]
    for group in app.registered_groups:
        found += [c.callback for c in group.typer_instance.registered_commands]
    return found


@pytest.mark.parametrize("command", _commands(), ids=lambda f: f.__name__)
def test_command_bodies_are_short(command):
    (node,) = ast.parse(inspect.getsource(command)).body
    first = node.body[0]
    docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    body = node.body[1:] if docstring else node.body
    lines = body[-1].end_lineno - body[0].lineno + 1
    assert lines <= MAX_BODY_LINES, f"{command.__module__}.{command.__name__}: {lines} lines"

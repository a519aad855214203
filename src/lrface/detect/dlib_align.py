"""Alignment for the teacher: dlib's frontal detector and 5-point landmarks to a 150x150 chip.

The chip is ``dlib.get_face_chip(image, landmarks, size=150, padding=0.25)``, the geometry
dlib's recognizer was trained on. Where several faces are found, the one nearest the image
centre is taken (LFW's subject is centred). Where the frontal (HOG) detector finds none and
``cnn_fallback`` is on, dlib's CNN detector (MMOD, ``mmod_human_face_detector.dat`` from the
same package; slower, better on profile and occluded faces) looks again. Where still none is
found and ``centre_fallback`` is on, the landmarks are fitted inside ``LFW_CENTRE_BOX`` (the
median dlib box over every 40th LFW image, as fractions of width and height); such chips are
counted as fallbacks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from lrface.models.dlib_teacher import LANDMARK_MODEL, model_file

CNN_DETECTOR_MODEL = "mmod_human_face_detector.dat"

LFW_CENTRE_BOX = (67 / 250, 80 / 250, 175 / 250, 187 / 250)


@dataclass(frozen=True)
class AlignSettings:
    """Everything that changes the chip; hashed into the chip cache key."""

    size: int = 150
    padding: float = 0.25
    upsample: int = 1
    centre_fallback: bool = True
    version: int = 1
    cnn_fallback: bool = False

    @property
    def key(self) -> str:
        """Cache key. ``cnn_fallback`` came later: it enters the key only when on, so the
        chips (and embeddings) cached under the original settings keep their key."""
        settings = asdict(self)
        if not self.cnn_fallback:
            del settings["cnn_fallback"]
        text = json.dumps(settings, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


@dataclass
class AlignResult:
    chip: np.ndarray | None
    fallback: bool
    faces_found: int


class NoFaceError(ValueError):
    """No face was found and the centre fallback is off."""


class DlibAligner:
    """Detect, find 5 landmarks, and cut the aligned chip."""

    def __init__(self, settings: AlignSettings | None = None):
        self.settings = settings or AlignSettings()

    @cached_property
    def _dlib(self):
        import dlib

        return dlib

    @cached_property
    def _detector(self):
        return self._dlib.get_frontal_face_detector()

    @cached_property
    def _cnn_detector(self):
        return self._dlib.cnn_face_detection_model_v1(str(model_file(CNN_DETECTOR_MODEL)))

    @cached_property
    def _predictor(self):
        return self._dlib.shape_predictor(str(model_file(LANDMARK_MODEL)))

    def align(self, image: np.ndarray) -> AlignResult:
        """Aligned chip of the most central face of an ``H x W x 3`` uint8 RGB image."""
        dlib = self._dlib
        height, width = image.shape[:2]
        faces = list(self._detector(image, self.settings.upsample))
        if not faces and self.settings.cnn_fallback:
            faces = [found.rect for found in self._cnn_detector(image, self.settings.upsample)]
        if faces:
            cx, cy = width / 2, height / 2
            box = min(faces, key=lambda r: (r.center().x - cx) ** 2 + (r.center().y - cy) ** 2)
            fallback = False
        elif self.settings.centre_fallback:
            left, top, right, bottom = LFW_CENTRE_BOX
            box = dlib.rectangle(
                round(left * width),
                round(top * height),
                round(right * width),
                round(bottom * height),
            )
            fallback = True
        else:
            return AlignResult(None, False, 0)
        shape = self._predictor(image, box)
        chip = dlib.get_face_chip(
            image, shape, size=self.settings.size, padding=self.settings.padding
        )
        return AlignResult(np.asarray(chip), fallback, len(faces))

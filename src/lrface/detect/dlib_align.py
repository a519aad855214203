"""Alignment for the teacher: dlib's frontal detector and 5-point landmarks to a 150x150 chip.

The chip is ``dlib.get_face_chip(image, landmarks, size=150, padding=0.25)``, the geometry
dlib's recognizer was trained on. Where several faces are found, the one nearest the image
centre is taken (LFW's subject is centred). Where the frontal (HOG) detector finds none and
``cnn_fallback`` is on, dlib's CNN detector (MMOD, ``mmod_human_face_detector.dat`` from the
same package; slower, better on profile and occluded faces) looks again. Where still none is
found and ``centre_fallback`` is on, the landmarks are fitted inside ``LFW_CENTRE_BOX`` (the
median dlib box over every 40th LFW image, as fractions of width and height): right for LFW's
250x250 framing only. For tight face crops (UTKFace and most face folders) use
``TIGHT_CROP_ALIGN``: no upsampling (the face fills the image, so the HOG scan finds it at its
own scale) and, where it finds none, ``whole_image_fallback`` fits the landmarks inside the whole
image, which is the face's box. Chips cut by either fallback are counted as fallbacks.
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
    whole_image_fallback: bool = False

    def __post_init__(self) -> None:
        if self.centre_fallback and self.whole_image_fallback:
            raise ValueError("choose one fallback: centre_fallback or whole_image_fallback")

    @property
    def key(self) -> str:
        """Cache key. ``cnn_fallback`` and ``whole_image_fallback`` came later: each enters the
        key only when on, so the chips (and embeddings) cached under the original settings keep
        their key."""
        settings = asdict(self)
        for later in ("cnn_fallback", "whole_image_fallback"):
            if not settings[later]:
                del settings[later]
        text = json.dumps(settings, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


TIGHT_CROP_ALIGN = AlignSettings(upsample=0, centre_fallback=False, whole_image_fallback=True)
"""Settings for folders of tightly cropped faces (UTKFace): see the module docstring."""


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
        elif self.settings.whole_image_fallback:
            box = dlib.rectangle(0, 0, width - 1, height - 1)
            fallback = True
        else:
            return AlignResult(None, False, 0)
        shape = self._predictor(image, box)
        chip = dlib.get_face_chip(
            image, shape, size=self.settings.size, padding=self.settings.padding
        )
        return AlignResult(np.asarray(chip), fallback, len(faces))

"""Face detection and alignment: a detected face and the interface every detector offers.

Coordinates everywhere in this package are continuous image coordinates: pixel ``(row i,
column j)`` covers ``[j, j+1) x [i, i+1)``, so a box ``[x1, y1, x2, y2]`` is ``x2 - x1`` pixels
wide and the centre of pixel ``(i, j)`` is ``(j + 0.5, i + 0.5)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Face:
    """One detection: ``box`` ``[x1, y1, x2, y2]``, ``score`` (MTCNN: probability in [0, 1];
    dlib: its detector margin), and ``landmarks`` (5 x 2, x then y) in the scheme ``kind``
    names: ``mtcnn`` = eye, eye, nose, mouth corner, mouth corner (each pair in image
    left-to-right order); ``dlib5`` = dlib's 5-point model (two corners of each eye, nose)."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray
    kind: str = "mtcnn"

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def to_dict(self) -> dict:
        """JSON-ready: box, score, landmarks rounded to 0.01 px."""
        return {
            "kind": self.kind,
            "box": [round(float(v), 2) for v in self.box],
            "width": round(self.width, 2),
            "score": round(float(self.score), 4),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
        }


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``[x1, y1, x2, y2]`` boxes."""
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / max(union, 1e-9))


class FaceDetector(Protocol):
    """What the pipeline needs from a detector."""

    name: str

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in one RGB uint8 ``H x W x 3`` image, best first."""
        ...

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        """Faces in each image."""
        ...


DETECT_MAX_PIXELS = 16_000_000
"""Larger images are detected on an area-downscaled copy of at most this many pixels (a
62-megapixel photo took 46 s and 3.5 GB in MTCNN); boxes and landmarks are mapped back to the
full image, from which the chips are cut. Faces narrower than ``min_face`` in the copy are
missed: in a 62 MP photo (copy scale 0.51) that is under about 40 px for ``min_face`` 20."""


def detect_bounded(
    detector: FaceDetector, image: np.ndarray, max_pixels: int = DETECT_MAX_PIXELS
) -> list[Face]:
    """``detector.detect(image)``, on a downscaled copy when ``image`` has more than
    ``max_pixels`` pixels, with the faces in ``image``'s coordinates."""
    height, width = image.shape[:2]
    if height * width <= max_pixels:
        return detector.detect(image)
    import cv2

    scale = (max_pixels / (height * width)) ** 0.5
    small_w, small_h = max(int(width * scale), 1), max(int(height * scale), 1)
    small = cv2.resize(image, (small_w, small_h), interpolation=cv2.INTER_AREA)
    back = np.array([width / small_w, height / small_h], np.float32)
    return [
        Face(f.box * np.tile(back, 2), f.score, f.landmarks * back, f.kind)
        for f in detector.detect(small)
    ]

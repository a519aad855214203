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


class FaceDetector(Protocol):
    """What the pipeline needs from a detector."""

    name: str

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in one RGB uint8 ``H x W x 3`` image, best first."""
        ...

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        """Faces in each image."""
        ...

"""dlib's HOG frontal face detector and 5-point landmarks, as a ``FaceDetector``.

Same models and upsampling as the benchmark's ``DlibAligner`` (``lrface.detect.dlib_align``),
so a face this detector finds is aligned exactly like the benchmark's chips
(``lrface.detect.align.align_face`` calls ``dlib.get_face_chip`` for ``kind == "dlib5"``).
Unlike the aligner it reports every face with its score, and has no centre fallback.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from lrface.detect import Face
from lrface.detect.dlib_align import AlignSettings
from lrface.models.dlib_teacher import LANDMARK_MODEL, model_file


class DlibDetector:
    """``upsample``: times the image is doubled before the HOG scan (finds faces down to about
    80 / 2**upsample px); ``threshold``: added to dlib's detection margin cut (0 = dlib's)."""

    name = "dlib"

    def __init__(self, upsample: int = AlignSettings.upsample, threshold: float = 0.0):
        self.upsample = upsample
        self.threshold = threshold

    @cached_property
    def _detector(self):
        import dlib

        return dlib.get_frontal_face_detector()

    @cached_property
    def _predictor(self):
        import dlib

        return dlib.shape_predictor(str(model_file(LANDMARK_MODEL)))

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image, highest margin first."""
        image = np.ascontiguousarray(image)
        rects, scores, _ = self._detector.run(image, self.upsample, self.threshold)
        faces = []
        for rect, score in sorted(zip(rects, scores, strict=True), key=lambda rs: -rs[1]):
            shape = self._predictor(image, rect)
            # dlib: integer pixel indices, right/bottom inclusive -> continuous coordinates
            points = np.array([[p.x + 0.5, p.y + 0.5] for p in shape.parts()], np.float32)
            box = np.array(
                [rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], np.float32
            )
            faces.append(Face(box, float(score), points, kind="dlib5"))
        return faces

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        return [self.detect(image) for image in images]

"""Huge images are detected on a bounded downscaled copy; faces come back in full-image
coordinates."""

from __future__ import annotations

import numpy as np

from lrface.detect import detect_bounded
from tests.test_pipeline import SquareDetector, scene


class Recording(SquareDetector):
    def __init__(self):
        self.shapes = []

    def detect(self, image):
        self.shapes.append(image.shape)
        return super().detect(image)


def test_large_images_are_detected_small_and_mapped_back():
    image = scene(("red", 100, 60, 80), size=400)
    detector = Recording()
    (face,) = detect_bounded(detector, image, max_pixels=40_000)
    assert detector.shapes == [(200, 200, 3)]
    np.testing.assert_allclose(face.box, [100, 60, 180, 140], atol=1)
    (full,) = SquareDetector().detect(image)
    np.testing.assert_allclose(face.landmarks, full.landmarks, atol=1)
    detect_bounded(detector, image, max_pixels=400 * 400)
    assert detector.shapes[-1] == (400, 400, 3)  # small enough: untouched


def test_box_iou():
    from lrface.detect import box_iou

    a = np.array([0, 0, 10, 10.0])
    assert box_iou(a, a) == 1.0
    assert box_iou(a, np.array([5, 0, 15, 10.0])) == 50 / 150
    assert box_iou(a, np.array([20, 20, 30, 30.0])) == 0.0

"""The annotated video (issue 26, item 11): a WebM browsers play, with labels readable at 720p."""

from __future__ import annotations

import cv2
import numpy as np

from lrface.detect import Face
from lrface.video.outputs import AnnotatedVideo


def test_labels_at_720p_are_on_a_band_about_20_px_high(tmp_path):
    path = tmp_path / "a.webm"
    video = AnnotatedVideo(path, 10.0)
    image = np.full((720, 1280, 3), 128, np.uint8)
    face = Face(np.array([600, 300, 700, 400], np.float32), 0.99, np.zeros((5, 2), np.float32))
    for _ in range(3):
        video.write(image, [(face, "#3 Ann Lee 0.93", True)], time=12.5)
    video.close()
    ok, frame = cv2.VideoCapture(str(path)).read()
    assert ok and frame.shape == (720, 1280, 3)
    dark = frame.max(axis=2) < 40
    band_rows = np.flatnonzero(dark[:300, 600:640].any(axis=1))  # the band above the box
    assert band_rows.size and 24 <= band_rows.max() - band_rows.min() + 1 <= 40
    assert 240 <= band_rows.max() < 300  # it sits on the box's top edge
    band_cols = np.flatnonzero(dark[band_rows.min() : band_rows.max(), 590:1280].any(axis=0))
    assert band_cols.size > 150  # track, name and score at ~20 px: 160 px of text
    assert dark[:40, :120].any()  # the time, top left

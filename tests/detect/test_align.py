"""Landmark alignment: the similarity fit, and chips whose landmarks land on the template."""

from __future__ import annotations

import numpy as np
import pytest

from lrface.data.images import load_rgb
from lrface.detect import Face
from lrface.detect.align import (
    MTCNN_TEMPLATE_150,
    align_face,
    chip_scale,
    native_chip_size,
    similarity_transform,
)


def test_similarity_transform_recovers_a_known_transform():
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = MTCNN_TEMPLATE_150
    dst = src @ (scale * rot).T + shift
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], scale * rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-9)


def test_native_chip_size_follows_the_face_size():
    # landmarks of a face drawn at half the chip's scale: a 75 px chip keeps it native
    face = Face(np.array([0, 0, 60, 60], np.float32), 1.0, MTCNN_TEMPLATE_150 / 2 + 7)
    assert chip_scale(face) == pytest.approx(2.0)
    assert native_chip_size(face) == 75
    assert native_chip_size(Face(face.box, 1.0, MTCNN_TEMPLATE_150 * 3)) == 150


def test_synthetic_face_warps_onto_the_template():
    # an image whose landmark pixels are marked: after alignment the marks sit on the template
    points = MTCNN_TEMPLATE_150 * 0.6 + np.array([40.0, 30.0])
    image = np.zeros((200, 200, 3), np.uint8)
    for x, y in points:
        image[int(y), int(x)] = 255
    chip = align_face(image, Face(np.array([40, 30, 130, 120], np.float32), 1.0, points))
    assert chip.shape == (150, 150, 3)
    for x, y in MTCNN_TEMPLATE_150:
        patch = chip[int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3]
        assert patch.max() > 100


@pytest.mark.lfw
def test_aligned_lfw_chip_has_its_landmarks_on_the_template(mtcnn, lfw_root):
    for name in (
        "George_W_Bush/George_W_Bush_0001.jpg",
        "Serena_Williams/Serena_Williams_0001.jpg",
    ):
        image = load_rgb(lfw_root / name)
        face = max(mtcnn.detect(image), key=lambda f: f.area)
        chip = align_face(image, face)
        assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
        canvas = np.pad(chip, ((40, 40), (40, 40), (0, 0)))
        again = max(mtcnn.detect(canvas), key=lambda f: f.area).landmarks - 40
        error = np.linalg.norm(again - MTCNN_TEMPLATE_150, axis=1)
        assert error[:2].max() < 4.0, f"{name}: eyes {error[:2]} px from the template"
        assert error.mean() < 5.0, f"{name}: landmarks {error} px from the template"


@pytest.mark.lfw
def test_dlib_detector_chip_is_the_benchmark_chip(lfw_root):
    from lrface.detect.dlib_align import DlibAligner
    from lrface.detect.dlib_detector import DlibDetector

    image = load_rgb(lfw_root / "George_W_Bush/George_W_Bush_0001.jpg")
    faces = DlibDetector().detect(image)
    assert len(faces) == 1 and faces[0].kind == "dlib5"
    np.testing.assert_array_equal(align_face(image, faces[0]), DlibAligner().align(image).chip)


def test_default_align_settings_keep_their_cache_key():
    """Every cached chip and embedding is filed under this key; a new option must not move it."""
    from lrface.detect.dlib_align import AlignSettings

    assert AlignSettings().key == "1af92687499b"
    assert AlignSettings(cnn_fallback=True).key != AlignSettings().key


def test_cnn_fallback_finds_a_face_the_frontal_detector_misses(lfw_root):
    from lrface.detect.dlib_align import AlignSettings, DlibAligner

    image = load_rgb(lfw_root / "Abdoulaye_Wade/Abdoulaye_Wade_0003.jpg")
    assert DlibAligner().align(image).fallback  # HOG: nothing, the centre box is used
    rescued = DlibAligner(AlignSettings(cnn_fallback=True)).align(image)
    assert not rescued.fallback and rescued.faces_found >= 1
    assert rescued.chip.shape == (150, 150, 3)

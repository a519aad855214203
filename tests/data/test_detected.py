"""Detected training faces: shrinking, the subject test, the cached bank, the stream's use of it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lrface.data.degrade import TrainDegradation, resize_chip
from lrface.data.detected import FACE_PX, detect_faces, is_subject, shrink_image
from lrface.detect import Face
from lrface.detect.align import MTCNN_TEMPLATE_150
from lrface.train.data import TransferStream


class CentreDetector:
    """Finds one face of the expected width at the image centre (plus a corner false box)."""

    name = "centre"

    def __init__(self):
        self.calls = 0

    def detect_batch(self, images):
        self.calls += len(images)
        out = []
        for image in images:
            side = image.shape[0]
            face_px = side * FACE_PX / 250
            scale = face_px / 110 * 124 / 150  # chip px -> image px, as in LFW
            landmarks = (MTCNN_TEMPLATE_150 - 75) * scale + side / 2
            half = face_px / 2
            box = np.array([side / 2 - half, side / 2 - half, side / 2 + half, side / 2 + half])
            corner = Face(np.array([0, 0, half, half], float), 0.9, landmarks - side / 3)
            out.append([corner, Face(box, 0.99, landmarks)])
        return out

    def detect(self, image):
        return self.detect_batch([image])[0]


def test_shrink_image_makes_the_face_the_asked_width():
    image = np.zeros((250, 250, 3), np.uint8)
    assert shrink_image(image, 16).shape == (36, 36, 3)
    assert shrink_image(image, 24).shape == (55, 55, 3)


def test_is_subject_wants_a_centred_face_of_plausible_width():
    centred = Face(np.array([10.0, 10.0, 26.0, 26.0]), 1.0, np.zeros((5, 2)))
    assert is_subject(centred, (36, 36, 3), 16)
    assert not is_subject(
        Face(np.array([0.0, 0.0, 16.0, 16.0]), 1.0, np.zeros((5, 2))), (36, 36), 16
    )
    assert not is_subject(
        Face(np.array([17.0, 17.0, 19.0, 19.0]), 1.0, np.zeros((5, 2))), (36, 36), 16
    )


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        path = tmp_path / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (250, 250, 3), dtype=np.uint8)).save(path)
        paths.append(path.name)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return tmp_path, paths[:2] + ["broken.jpg"] + paths[2:]


def test_detect_faces_keeps_the_subject_skips_broken_files_and_caches(images, capsys):
    root, relpaths = images
    detector = CentreDetector()
    faces = detect_faces(root, relpaths, (16, 24), detector, {"name": "centre"}, progress=False)
    assert "skipped 1 unreadable images" in capsys.readouterr().out
    assert len(faces) == 6 and faces.sizes == (16, 24)
    assert faces.found.tolist() == [[True, True, False, True, True, True]] * 2
    assert faces.images[0].shape == (6, 36, 36, 3) and faces.images[1].shape == (6, 55, 55, 3)
    assert is_subject(faces.face(0, 0), (36, 36), 16)  # the centred box, not the corner one
    assert list(faces.choices(2)) == [] and list(faces.choices(0)) == [0, 1]
    calls = detector.calls
    again = detect_faces(root, relpaths, (16, 24), detector, {"name": "centre"}, progress=False)
    assert detector.calls == calls  # served from the cache
    assert np.array_equal(again.landmarks, faces.landmarks)
    assert np.array_equal(again.images[1], faces.images[1])


def test_chip_is_one_warp_to_the_student_input(images):
    root, relpaths = images
    faces = detect_faces(root, relpaths, (16,), CentreDetector(), {"name": "c2"}, progress=False)
    assert faces.chip(0, 0, 32).shape == (32, 32, 3)
    assert faces.chip(0, 0, 150).shape == (150, 150, 3)


def test_stream_takes_detected_versions_at_the_asked_rate(images):
    root, relpaths = images
    faces = detect_faces(root, relpaths, (16,), CentreDetector(), {"name": "c3"}, progress=False)
    n = len(faces)
    chips = np.random.default_rng(1).integers(0, 256, (n, 150, 150, 3), dtype=np.uint8)
    emb, labels = np.ones((n, 4), np.float32), np.arange(n)
    common = dict(input_size=32, batch_size=n, flip=False)
    degradation = TrainDegradation()
    plain = TransferStream(chips, emb, labels, degradation, **common)
    off = TransferStream(chips, emb, labels, degradation, detected=faces, **common)
    assert np.array_equal(plain.batch(0)["lr"], off.batch(0)["lr"])  # prob 0: untouched
    always = TransferStream(
        chips, emb, labels, degradation, detected=faces, detected_prob=1.0, **common
    )
    _, target, _ = always.rows(0)
    lr = always.batch(0)["lr"].permute(0, 2, 3, 1).numpy().astype(np.uint8)
    for i, row in enumerate(target):
        if faces.found[0, row]:
            assert np.array_equal(lr[i], faces.chip(0, row, 32))
        else:  # the broken file: back to the degradation, after the draw that chose
            _, rng = always._flip(0, row)
            rng.random()
            expected = resize_chip(degradation(chips[row], rng), 32, "bicubic")
            assert np.array_equal(lr[i], expected)
    with pytest.raises(ValueError, match="detected faces"):
        TransferStream(chips, emb, labels, degradation, detected_prob=0.5, **common)


class FailingDetector(CentreDetector):
    """Dies after ``limit`` images, like a killed job."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def detect_batch(self, images):
        if self.calls + len(images) > self.limit:
            raise KeyboardInterrupt
        return super().detect_batch(images)


def test_detection_checkpoints_and_resumes_to_the_same_result(tmp_path, monkeypatch):
    import lrface.data.detected as detected

    monkeypatch.setattr(detected, "CHUNK", 2)
    monkeypatch.setattr(detected, "SAVE_EVERY", 4)
    rng = np.random.default_rng(2)
    relpaths = []
    for i in range(11):
        Image.fromarray(rng.integers(0, 256, (250, 250, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png"
        )
        relpaths.append(f"{i}.png")
    whole = detect_faces(
        tmp_path, relpaths, (16,), CentreDetector(), {"run": "whole"}, progress=False
    )
    dying = FailingDetector(limit=7)
    with pytest.raises(KeyboardInterrupt):
        detect_faces(tmp_path, relpaths, (16,), dying, {"run": "cut"}, progress=False)
    assert list((detected.cache_dir() / "detected").glob("*.partial.npz"))
    rerun = CentreDetector()
    resumed = detect_faces(tmp_path, relpaths, (16,), rerun, {"run": "cut"}, progress=False)
    assert rerun.calls == 11 - 4  # the 4 images checkpointed before the failure are not redone
    assert np.array_equal(resumed.images[0], whole.images[0])
    assert np.array_equal(resumed.landmarks, whole.landmarks)
    assert np.array_equal(resumed.found, whole.found)
    assert not list((detected.cache_dir() / "detected").glob("*.partial.npz"))


def test_subset_keeps_the_chosen_rows_in_order(images):
    root, relpaths = images
    faces = detect_faces(root, relpaths, (16, 24), CentreDetector(), {"name": "c4"}, progress=False)
    part = faces.subset(np.array([4, 0]))
    assert len(part) == 2 and part.sizes == faces.sizes
    assert np.array_equal(part.images[1][0], faces.images[1][4])
    assert np.array_equal(part.landmarks[:, 1], faces.landmarks[:, 0])
    assert np.array_equal(part.chip(0, 0, 32), faces.chip(0, 4, 32))


class RecordingDetector(CentreDetector):
    """``CentreDetector`` that remembers the shapes it was shown."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def detect_batch(self, images):
        self.shapes += [image.shape for image in images]
        return super().detect_batch(images)


def test_plan_frames_tight_crops_and_shrinks_by_their_own_face_width():
    from lrface.data.detected import DetectionPlan

    image = np.full((200, 200, 3), 255, np.uint8)
    framed = DetectionPlan(162.0, pad=0.25).frame(image)
    assert framed.shape == (300, 300, 3)
    assert framed[:50].max() == 0 and framed[50:250, 50:250].min() == 255
    assert DetectionPlan().frame(image) is image
    assert shrink_image(framed, 16, 162.0).shape == (30, 30, 3)  # 300 * 16 / 162


def test_plan_detects_small_faces_on_an_upscaled_image_in_small_coordinates():
    from lrface.data.detected import DetectionPlan

    small = np.zeros((18, 18, 3), np.uint8)
    plan = DetectionPlan(upscale_max_face=12)
    detector = RecordingDetector()
    (faces,) = plan.detect(detector, [small], 8)
    assert detector.shapes == [(36, 36, 3)]
    (direct,) = CentreDetector().detect_batch([np.zeros((36, 36, 3), np.uint8)])
    np.testing.assert_allclose(faces[1].box, direct[1].box / 2)
    np.testing.assert_allclose(faces[1].landmarks, direct[1].landmarks / 2)
    plan.detect(detector, [small], 16)  # above the limit: the image as it is
    assert detector.shapes[-1] == (18, 18, 3)


def test_concat_pads_images_and_keeps_chips_and_scatter_fills_rows(images):
    from lrface.data.detected import concat_detected, undetected
    from lrface.train.detected_bank import _scatter

    root, relpaths = images
    faces = detect_faces(root, relpaths, (16,), CentreDetector(), {"name": "c5"}, progress=False)
    empty = undetected((16,), 3)
    assert empty.found.sum() == 0 and len(empty) == 3
    joined = concat_detected([empty, faces])
    assert len(joined) == 3 + len(faces) and joined.images[0].shape[1:] == (36, 36, 3)
    assert np.array_equal(joined.chip(0, 3, 32), faces.chip(0, 0, 32))
    assert list(joined.choices(1)) == [] and list(joined.choices(3)) == [0]
    spread = _scatter(undetected((16,), 12), faces, np.arange(0, 12, 2))
    assert spread.found[0].tolist() == [True, False] * 2 + [False, False] + [True, False] * 3
    assert np.array_equal(spread.chip(0, 6, 32), faces.chip(0, 3, 32))
    with pytest.raises(ValueError, match="same widths"):
        concat_detected([empty, undetected((16, 24), 1)])


def test_lfw_at_width_shrinks_the_whole_image_so_the_face_has_that_width():
    from lrface.data.detected import lfw_at_width

    images = [np.zeros((250, 250, 3), np.uint8)] * 2
    assert lfw_at_width(images, None) == (FACE_PX, images)
    target, small = lfw_at_width(images, 16)
    assert target == 16 and [i.shape for i in small] == [(36, 36, 3)] * 2

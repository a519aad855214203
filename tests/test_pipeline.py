"""FacePipeline with a fake detector and encoders (fast, no data), plus one end-to-end check on
LFW with MTCNN and the dlib teacher. The commands built on it: tests/cli/."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from lrface.constants import SEARCH_PROBE_FLIP, TEMPLATE_FLIP
from lrface.detect import Face
from lrface.detect.align import MTCNN_TEMPLATE_150
from lrface.models.encoder import FaceEncoder
from lrface.pipeline import (
    Calibration,
    FacePipeline,
    MultipleFacesError,
    NoFaceError,
    select_faces,
)

COLOURS = {"red": (220, 30, 30), "green": (30, 220, 30), "blue": (30, 30, 220)}


class SquareDetector:
    """Every uniformly coloured square on black is a face; landmarks on the chip template."""

    name = "squares"

    def detect(self, image: np.ndarray) -> list[Face]:
        count, labels = cv2.connectedComponents((image.max(2) > 0).astype(np.uint8))
        faces = []
        for label in range(1, count):
            ys, xs = np.nonzero(labels == label)
            x1, y1, side = xs.min(), ys.min(), xs.max() + 1 - xs.min()
            box = np.array([x1, y1, x1 + side, y1 + side], np.float32)
            points = MTCNN_TEMPLATE_150 * side / 150 + box[:2]
            faces.append(Face(box, 1.0, points.astype(np.float32)))
        return faces

    def detect_batch(self, images):
        return [self.detect(i) for i in images]


class ColourEncoder(FaceEncoder):
    """Embeds a chip by its mean colour; remembers the chip sizes it was given."""

    dim = 4

    def __init__(self, name: str, input_size: int = 150):
        super().__init__()
        self.name = name
        self.input_size = input_size
        self.seen: list[int] = []
        self.batches: list[int] = []
        self.flips: list[bool] = []

    def embed(self, chips, flip=False):
        self.seen += [chips.shape[1]] * len(chips)
        self.batches.append(len(chips))
        self.flips.append(flip)
        return super().embed(chips, flip)

    def _embed_batch(self, chips):
        # the mean colour of the left half: a mirrored chip embeds differently
        left = chips[:, :, : chips.shape[2] // 2]
        mean = left.reshape(len(chips), -1, 3).mean(1)
        return np.concatenate([mean, np.full((len(chips), 1), 40.0)], axis=1)


def scene(*squares: tuple[str, int, int, int], size: int = 200) -> np.ndarray:
    """Black image with (colour, x, y, side) squares."""
    img = np.zeros((size, size, 3), np.uint8)
    for colour, x, y, side in squares:
        img[y : y + side, x : x + side] = COLOURS[colour]
    return img


@pytest.fixture
def pipe() -> FacePipeline:
    return FacePipeline(
        SquareDetector(),
        ColourEncoder("teacher"),
        ColourEncoder("student", input_size=32),
        size_cutoff=48,
    )


def test_small_faces_go_to_the_student_warped_once_to_its_input(pipe):
    image = scene(("red", 10, 10, 100), ("green", 150, 150, 30), ("blue", 10, 150, 12))
    faces = pipe.detect(image, policy="all")
    embedded = pipe.embed_faces(image, faces)
    roles = {tuple(e.face.box[:2].astype(int)): (e.role, e.encoder, e.chip_size) for e in embedded}
    # chip_size is the face's own resolution (one chip px per image px), for calibration
    assert roles[(10, 10)] == ("teacher", "teacher", 150)
    assert roles[(150, 150)] == ("student", "student", 30)
    assert roles[(10, 150)] == ("student", "student", 12)
    # the warp goes straight to the student's 32 px input, never to 12 then resampled
    assert pipe.teacher.seen == [150] and sorted(pipe.student.seen) == [32, 32]
    # faces of different sizes share one student batch (their chips are all 32 px)
    assert pipe.student.batches == [2]
    alone = FacePipeline(SquareDetector(), ColourEncoder("teacher"), None)
    assert [e.role for e in alone.embed_faces(image, faces)] == ["teacher"] * 3


def test_templates_are_the_teacher_s_embedding_averaged_with_the_mirror_image(pipe):
    # a face red on its left half and blue on its right, and a small one for the student
    image = scene(("red", 10, 10, 100), ("green", 150, 150, 30))
    image[10:110, 60:110] = COLOURS["blue"]
    probes = pipe.embed_image(image, "all")
    templates = pipe.embed_template(image, "all")
    assert pipe.teacher.flips == [False, TEMPLATE_FLIP] and pipe.student.flips == [False, False]
    # a still image's watch-list search mirrors the teacher's faces too, never a student's
    searched = pipe.embed_probe(image, "all")
    assert pipe.teacher.flips[-1] == SEARCH_PROBE_FLIP and pipe.student.flips[-1] is False
    np.testing.assert_allclose(searched[0].embedding, templates[0].embedding)
    probe, template = probes[0].embedding, templates[0].embedding
    assert probes[0].role == templates[0].role == "teacher"
    # the probe sees the (mostly red) left half; the template both halves' colours
    assert probe[0] > probe[2] and (not TEMPLATE_FLIP or abs(template[0] - template[2]) < 0.2)
    np.testing.assert_allclose(probes[1].embedding, templates[1].embedding)


def test_multi_face_policies_and_no_face(pipe, tmp_path):
    faces = SquareDetector().detect(scene(("red", 10, 10, 100), ("green", 150, 150, 30)))
    assert select_faces(faces, "largest", "x.jpg")[0].width == 100
    assert len(select_faces(faces, "all", "x.jpg")) == 2
    with pytest.raises(MultipleFacesError, match="x.jpg: 2 faces found"):
        select_faces(faces, "error", "x.jpg")
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.zeros((50, 50, 3), np.uint8))
    with pytest.raises(NoFaceError, match="blank.png: no face found"):
        pipe.embed_image(blank)
    with pytest.raises(ValueError, match="policy"):
        FacePipeline(SquareDetector(), ColourEncoder("t"), None, multi_face="first")


def test_verify_scores_and_thresholds(pipe, tmp_path):
    red_big, red_small = scene(("red", 20, 20, 120)), scene(("red", 5, 5, 30))
    blue = scene(("blue", 20, 20, 120))
    same = pipe.verify(red_big, red_small, threshold=0.99)
    assert same.same is True and same.score > 0.999
    assert (same.a.role, same.b.role) == ("teacher", "student")
    other = pipe.verify(red_big, blue, threshold=0.99)
    assert other.same is False and other.score < 0.9
    assert pipe.verify(red_big, blue).same is None

    single = tmp_path / "single.json"
    single.write_text(json.dumps({"threshold": 0.25, "encoder": "teacher"}))
    result = pipe.verify(red_big, blue, calibration=Calibration.load(single))
    assert result.same is True and result.threshold == 0.25
    assert (
        pipe.verify(red_big, blue, threshold=0.99, calibration=Calibration.load(single)).same
        is False
    )

    table = tmp_path / "bench.json"
    thresholds = {"hr-hr@full": 0.1, "hr-lr@16": 0.2, "hr-lr@48": 0.3, "lr-lr@48": 0.4}
    calib = {"gallery_encoder": "teacher", "probe_encoder": "student", "thresholds": thresholds}
    table.write_text(json.dumps(calib))
    result = pipe.verify(red_big, red_small, calibration=Calibration.load(table))
    assert result.threshold_source.endswith("[hr-lr@48]") and result.threshold == 0.3
    # no calibration for the teacher's own small faces: said, not replaced by another's
    alone = FacePipeline(SquareDetector(), ColourEncoder("teacher"), None)
    with pytest.raises(ValueError, match="no verification calibration for probe encoder teacher"):
        alone.verify(red_big, red_small, calibration=Calibration.load(table))
    flipped = tmp_path / "flipped.json"
    flipped.write_text(json.dumps(calib | {"flip": True}))
    with pytest.raises(ValueError, match="flipped.json: calibration was measured"):
        pipe.verify(red_big, red_small, calibration=Calibration.load(flipped))


def test_a_small_face_the_teacher_serves_is_judged_by_its_resolution(tmp_path):
    """Without a student, a 16 px face goes to the teacher and must still be judged by the
    teacher's hr-lr threshold at 16 px, not by its full-size one."""
    alone = FacePipeline(SquareDetector(), ColourEncoder("teacher"), None)
    table = tmp_path / "teacher.json"
    thresholds = {"hr-hr@full": 0.9, "hr-lr@16": 0.2, "lr-lr@16": 0.3}
    table.write_text(
        json.dumps(
            {
                "gallery_encoder": "teacher",
                "probe_encoder": "teacher",
                "flip": False,
                "thresholds": thresholds,
            }
        )
    )
    calib = Calibration.load(table)
    result = alone.verify(scene(("red", 20, 20, 120)), scene(("red", 5, 5, 16)), calibration=calib)
    assert result.b.role == "teacher" and result.b.resolution == 16
    assert result.threshold == 0.2 and result.threshold_source.endswith("[hr-lr@16]")
    big = alone.verify(
        scene(("red", 0, 0, 160), size=170), scene(("red", 0, 0, 150), size=170), calibration=calib
    )
    assert big.threshold_source.endswith("[hr-hr@full]")


def test_verify_compares_every_face_and_says_which_matched(pipe):
    group = scene(("blue", 5, 5, 60), ("red", 100, 100, 70), ("green", 5, 120, 60))
    result = pipe.verify(scene(("red", 20, 20, 120)), group, threshold=0.99)
    assert result.same is True and result.comparisons == 3
    assert result.b.faces_in_image == 3 and tuple(result.b.face.box[:2]) == (100, 100)
    largest = FacePipeline(SquareDetector(), ColourEncoder("teacher"), None, multi_face="largest")
    assert largest.verify(scene(("red", 20, 20, 120)), group, threshold=0.99).comparisons == 1


def test_dominant_policy_refuses_similar_faces():
    faces = SquareDetector().detect(scene(("red", 10, 10, 100), ("green", 120, 120, 75)))
    with pytest.raises(MultipleFacesError, match="2 faces of similar size"):
        select_faces(faces, "dominant", "group.jpg")
    faces = SquareDetector().detect(scene(("red", 10, 10, 100), ("green", 150, 150, 30)))
    assert [f.width for f in select_faces(faces, "dominant", "portrait.jpg")] == [100]


@pytest.mark.lfw
def test_lfw_end_to_end_same_person_scores_higher(mtcnn_pipeline, lfw_root):
    bush = [lfw_root / f"George_W_Bush/George_W_Bush_000{i}.jpg" for i in (1, 2)]
    other = lfw_root / "Serena_Williams/Serena_Williams_0001.jpg"
    same = mtcnn_pipeline.verify(*bush)
    different = mtcnn_pipeline.verify(bush[0], other)
    assert same.a.role == "teacher" and same.score > different.score + 0.05


@pytest.fixture
def mtcnn_pipeline():
    import torch

    from lrface.detect.mtcnn import MTCNN
    from lrface.detect.weights import WeightsUnavailableError
    from lrface.models.dlib_teacher import DlibEncoder

    torch.set_num_threads(1)
    try:
        detector = MTCNN()
    except WeightsUnavailableError as exc:
        pytest.skip(f"MTCNN weights cannot be fetched (no network?): {exc}")
    return FacePipeline(detector, DlibEncoder(), None)


def test_the_cutoff_is_the_given_one_else_the_student_s_own_else_the_default():
    from lrface.pipeline import DEFAULT_SIZE_CUTOFF

    student = ColourEncoder("student", input_size=32)
    assert FacePipeline(SquareDetector(), ColourEncoder("t"), student).size_cutoff == (
        DEFAULT_SIZE_CUTOFF
    )
    student.size_cutoff = 20.0
    assert FacePipeline(SquareDetector(), ColourEncoder("t"), student).size_cutoff == 20.0
    assert FacePipeline(SquareDetector(), ColourEncoder("t"), student, 12).size_cutoff == 12

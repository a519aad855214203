"""FacePipeline and the pipeline commands with a fake detector and encoders (fast, no data),
plus one end-to-end check on LFW with MTCNN and the dlib teacher."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from lrface.cli import photos as pipeline_cli
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
from lrface.search.gallery import Gallery
from lrface.search.store import open_store
from tests.conftest import needs_lfw

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

    def embed(self, chips, flip=False):
        self.seen += [chips.shape[1]] * len(chips)
        self.batches.append(len(chips))
        return super().embed(chips, flip)

    def _embed_batch(self, chips):
        mean = chips.reshape(len(chips), -1, 3).mean(1)
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


@pytest.fixture
def cli(monkeypatch):
    """The pipeline commands wired to the fake detector and encoders."""
    encoders = {
        "teacher": ColourEncoder("teacher"),
        "other": ColourEncoder("other"),
        "lrface-lr-v2": ColourEncoder("lrface-lr-v2", input_size=32),  # the shipped default
    }
    monkeypatch.setattr(pipeline_cli, "make_detector", lambda *a, **k: SquareDetector())
    monkeypatch.setattr(pipeline_cli, "_encoder", lambda name, device: encoders[name])
    app = typer.Typer()
    app.command("verify")(pipeline_cli.verify_command)
    app.command("detect")(pipeline_cli.detect_command)
    app.add_typer(pipeline_cli.gallery_app, name="gallery")
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def _photo(path, *squares):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(scene(*squares), cv2.COLOR_RGB2BGR))


def test_enroll_skips_bad_files_and_keeps_the_gallery(cli, tmp_path):
    people = tmp_path / "people"
    _photo(people / "red" / "1.png", ("red", 20, 20, 120))
    _photo(people / "red" / "2.png", ("red", 40, 30, 90))
    _photo(people / "blue" / "only.png", ("blue", 20, 20, 120))  # single photo is enough
    (people / "blue" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    _photo(people / "blue" / "empty.png")  # no face
    (people / "green").mkdir()
    (people / "stray.png").write_bytes(b"")
    gallery = tmp_path / "g.db"

    result = cli("gallery", "enroll", people, "--gallery", gallery, "--encoder", "teacher")
    assert result.exit_code == 0, result.output
    assert "enrolled 3 photos of 2 identities" in result.output
    assert "skipped 4" in result.output
    assert "broken.jpg: corrupt or truncated image" in result.output
    assert "empty.png: no face found" in result.output
    assert "green: identity not enrolled: no usable photo" in result.output
    assert "5/5" in result.output  # progress, photo by photo
    with open_store(gallery) as store:
        assert [(i.name, i.photos) for i in store.identities()] == [("blue", 1), ("red", 2)]
        assert store.thumbnail("red")[:2] == b"\xff\xd8"  # a JPEG of the aligned face
    assert gallery.stat().st_mode & 0o777 == 0o600  # biometric data: owner only

    # a rerun adds only what is missing
    _photo(people / "red" / "3.png", ("red", 10, 10, 150))
    result = cli("gallery", "enroll", people, "--gallery", gallery, "--encoder", "teacher")
    assert result.exit_code == 0, result.output
    assert "enrolled 1 photos of 1 identities" in result.output
    assert "3 photos were already enrolled" in result.output

    probe = tmp_path / "probe.png"
    _photo(probe, ("blue", 60, 60, 25))
    result = cli("gallery", "search", probe, "--gallery", gallery, "-k", "2")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "1 face found" in lines[0] and "answer: undecided (no open-set calibration" in lines[1]
    assert "1. blue" in lines[2] and "2. red" in lines[3]

    assert "1 identities left" in cli("gallery", "remove", "red", "--gallery", gallery).output
    assert cli("gallery", "remove", "red", "--gallery", gallery).exit_code == 1
    listed = cli("gallery", "list", "--gallery", gallery).output
    assert "1 identities, encoder teacher (4-d)" in listed and "blue\t1 photo(s)" in listed

    result = cli("gallery", "enroll", people, "--gallery", gallery, "--encoder", "other")
    assert (
        result.exit_code == 1 and "g.db: gallery was enrolled with encoder teacher" in result.output
    )
    with open_store(gallery) as store:
        assert [i.name for i in store.identities()] == ["blue"]

    cli("gallery", "remove", "blue", "--gallery", gallery)
    result = cli("gallery", "search", probe, "--gallery", gallery)
    assert result.exit_code == 1 and "g.db: the gallery is empty" in result.output


def test_enroll_interrupted_keeps_the_committed_batches(cli, tmp_path, monkeypatch):
    people = tmp_path / "people"
    for i in range(5):
        _photo(people / "red" / f"{i}.png", ("red", 10 + i, 10, 100 + i))
    gallery = tmp_path / "g.db"
    monkeypatch.setattr(pipeline_cli, "ENROLL_BATCH", 2)
    calls = []
    real = FacePipeline.embed_image

    def dies_at_the_fifth(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(FacePipeline, "embed_image", dies_at_the_fifth)
    result = cli("gallery", "enroll", people, "--gallery", gallery, "--encoder", "teacher")
    assert result.exit_code == 130 and "interrupted: 4 photos committed" in result.output
    with open_store(gallery) as store:
        assert store.identities()[0].photos == 4  # two batches of two were committed
    monkeypatch.setattr(FacePipeline, "embed_image", real)
    result = cli("gallery", "enroll", people, "--gallery", gallery, "--encoder", "teacher")
    assert (
        "enrolled 1 photos" in result.output and "4 photos were already enrolled" in result.output
    )


def test_migrate_and_old_or_broken_gallery_files(cli, tmp_path):
    old = tmp_path / "old.safetensors"
    legacy = Gallery("teacher", 4, "teacher")
    legacy.add("red", np.array([[1.0, 0, 0, 0], [0.9, 0.1, 0, 0]]), ["a.png", "b.png"])
    legacy.save(old)
    probe = tmp_path / "probe.png"
    _photo(probe, ("red", 60, 60, 25))
    result = cli("gallery", "search", probe, "--gallery", old)
    assert result.exit_code == 1 and "lrface gallery migrate" in result.output

    new = tmp_path / "new.db"
    result = cli("gallery", "migrate", old, new)
    assert result.exit_code == 0 and "migrated 1 identities (2 photos)" in result.output
    assert "1. red" in cli("gallery", "search", probe, "--gallery", new).output
    assert cli("gallery", "migrate", old, new).exit_code == 1  # never overwrites

    cut = tmp_path / "cut.db"
    cut.write_bytes(new.read_bytes()[:1000])
    result = cli("gallery", "list", "--gallery", cut)
    assert result.exit_code == 1 and "cut.db: truncated or corrupt" in result.output
    cut_old = tmp_path / "cut.safetensors"
    cut_old.write_bytes(old.read_bytes()[:-10])
    result = cli("gallery", "list", "--gallery", cut_old)
    assert result.exit_code == 1 and "cut.safetensors: truncated or corrupt" in result.output
    result = cli("gallery", "list", "--gallery", tmp_path)
    assert result.exit_code == 1 and "is a directory" in result.output


def test_verify_command_reports_encoders(cli, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    _photo(a, ("red", 20, 20, 120))
    _photo(b, ("red", 5, 5, 14))
    result = cli("verify", a, b, "--encoder", "teacher", "--student", "other", "--threshold", "0.9")
    assert result.exit_code == 0, result.output
    assert "decision: same person (threshold 0.9000 from --threshold: given)" in result.output
    assert "-> teacher teacher (150 px chip)" in result.output
    assert "-> student other (14 px chip)" in result.output
    missing = cli("verify", a, tmp_path / "nope.jpg", "--encoder", "teacher")
    assert missing.exit_code == 1 and "nope.jpg: no such file" in missing.output


def test_small_faces_go_to_the_shipped_student_unless_told_none(cli, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    _photo(a, ("red", 20, 20, 120))
    _photo(b, ("red", 5, 5, 12))
    result = cli("verify", a, b, "--encoder", "teacher", "--threshold", "0.9")
    assert "-> student lrface-lr-v2 (12 px chip)" in result.output, result.output
    alone = cli("verify", a, b, "--encoder", "teacher", "--student", "none", "--threshold", "0.9")
    assert alone.exit_code == 0 and "-> teacher teacher (150 px chip)" in alone.output
    assert "student" not in alone.output.split("decision")[1]


def test_detect_reports_the_face_count(cli, tmp_path):
    _photo(tmp_path / "two.png", ("red", 10, 10, 80), ("blue", 100, 100, 70))
    (out,) = json.loads(cli("detect", tmp_path / "two.png").output)
    assert out["count"] == 2 and len(out["faces"]) == 2


def test_search_answers_unknown_under_the_openset_threshold(cli, tmp_path):
    people = tmp_path / "people"
    _photo(people / "red" / "1.png", ("red", 20, 20, 120), ("green", 150, 150, 30))
    _photo(people / "group" / "1.png", ("red", 10, 10, 80), ("blue", 100, 100, 70))
    gallery = tmp_path / "g.db"
    result = cli("gallery", "enroll", people, "--gallery", gallery, "--encoder", "teacher")
    assert "enrolled 1 photos of 1 identities" in result.output
    assert "1 of those photos held several faces; the clearly largest one" in result.output
    assert "1.png: 2 faces of similar size (80, 70 px wide)" in result.output
    calib = tmp_path / "openset.json"
    calib.write_text(
        json.dumps(
            {
                "encoder": "teacher",
                "flip": False,
                "openset": {"16": 0.999, "full": 0.5},
                "openset_fpir": 0.01,
            }
        )
    )
    probe = tmp_path / "probe.png"
    _photo(probe, ("blue", 60, 60, 16))  # a stranger, but red is the nearest template
    args = ("gallery", "search", probe, "--gallery", gallery, "--calibration", calib)
    text = cli(*args).output
    assert "answer: unknown (best score" in text and "open-set threshold at 16" in text
    assert "1. red" in text
    (answer,) = json.loads(cli(*args, "--json").output)
    assert answer["decision"]["identity"] == "unknown" and answer["decision"]["threshold"] == 0.999
    known = json.loads(cli(*args, "--json", "--threshold", "0.1").output)[0]
    assert known["decision"]["identity"] == "red" and known["faces_in_image"] == 1


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


def test_size_cutoff_help_shows_the_real_default():
    from lrface.cli import app
    from lrface.pipeline import DEFAULT_SIZE_CUTOFF

    assert pipeline_cli.SIZE_CUTOFF_HELP == DEFAULT_SIZE_CUTOFF
    from lrface.models.pretrained import DEFAULT_STUDENT

    assert pipeline_cli.DEFAULT_STUDENT == DEFAULT_STUDENT
    text = " ".join(
        CliRunner()
        .invoke(app, ["verify", "--help"], env={"COLUMNS": "300"})
        .output.replace("│", "")
        .split()
    )
    assert (
        "go to the student (default: the student's own measured cutoff, else 16 px, "
        "lrface.pipeline.DEFAULT_SIZE_CUTOFF)" in text
    )


@pytest.mark.lfw
@needs_lfw
def test_gallery_search_uses_the_shipped_student_for_a_small_probe(lfw_root, tmp_path):
    """No flag: a 14 px face is embedded by lrface-lr-v2, and the output says so."""
    from PIL import Image

    from lrface.cli import app
    from lrface.detect.weights import WeightsUnavailableError, fetch_mtcnn_weights

    try:
        fetch_mtcnn_weights()
    except WeightsUnavailableError as exc:
        pytest.skip(f"MTCNN weights cannot be fetched (no network?): {exc}")
    people = tmp_path / "people"
    for name in ("George_W_Bush", "Serena_Williams"):
        (people / name).mkdir(parents=True)
        shutil.copy(lfw_root / name / f"{name}_0001.jpg", people / name / "1.jpg")
    probe = tmp_path / "probe.png"
    photo = Image.open(lfw_root / "George_W_Bush" / "George_W_Bush_0002.jpg")
    photo.resize((32, 32), Image.Resampling.BOX).save(probe)  # LFW faces ~110 px: ~14 px here
    runner = CliRunner()
    gallery = str(tmp_path / "g.db")
    enrolled = runner.invoke(app, ["gallery", "enroll", str(people), "--gallery", gallery])
    assert enrolled.exit_code == 0, enrolled.output
    args = ["gallery", "search", str(probe), "--gallery", gallery, "--min-face", "12"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    (face,) = json.loads(result.output)
    assert face["encoder_name"] == "lrface-lr-v2" and face["role"] == "student"
    teacher_only = json.loads(runner.invoke(app, [*args, "--json", "--student", "none"]).output)
    assert teacher_only[0]["role"] == "teacher"


def test_the_cutoff_is_the_given_one_else_the_student_s_own_else_the_default():
    from lrface.pipeline import DEFAULT_SIZE_CUTOFF

    student = ColourEncoder("student", input_size=32)
    assert FacePipeline(SquareDetector(), ColourEncoder("t"), student).size_cutoff == (
        DEFAULT_SIZE_CUTOFF
    )
    student.size_cutoff = 20.0
    assert FacePipeline(SquareDetector(), ColourEncoder("t"), student).size_cutoff == 20.0
    assert FacePipeline(SquareDetector(), ColourEncoder("t"), student, 12).size_cutoff == 12

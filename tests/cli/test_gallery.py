"""``lrface gallery``: enroll, search, remove, list, migrate with the fake detector and
encoders (tests/cli/conftest.py), plus one search on LFW with the shipped student."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from lrface import enrolment
from lrface.pipeline import FacePipeline
from lrface.search.gallery import Gallery
from lrface.search.store import open_store
from tests.cli.conftest import photo
from tests.conftest import needs_lfw


def test_enroll_skips_bad_files_and_keeps_the_gallery(cli, tmp_path):
    people = tmp_path / "people"
    photo(people / "red" / "1.png", ("red", 20, 20, 120))
    photo(people / "red" / "2.png", ("red", 40, 30, 90))
    photo(people / "blue" / "only.png", ("blue", 20, 20, 120))  # single photo is enough
    (people / "blue" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    photo(people / "blue" / "empty.png")  # no face
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
    photo(people / "red" / "3.png", ("red", 10, 10, 150))
    result = cli("gallery", "enroll", people, "--gallery", gallery, "--encoder", "teacher")
    assert result.exit_code == 0, result.output
    assert "enrolled 1 photos of 1 identities" in result.output
    assert "3 photos were already enrolled" in result.output

    probe = tmp_path / "probe.png"
    photo(probe, ("blue", 60, 60, 25))
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
        photo(people / "red" / f"{i}.png", ("red", 10 + i, 10, 100 + i))
    gallery = tmp_path / "g.db"
    monkeypatch.setattr(enrolment, "ENROL_BATCH", 2)
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
    photo(probe, ("red", 60, 60, 25))
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


def test_search_answers_unknown_under_the_openset_threshold(cli, tmp_path):
    people = tmp_path / "people"
    photo(people / "red" / "1.png", ("red", 20, 20, 120), ("green", 150, 150, 30))
    photo(people / "group" / "1.png", ("red", 10, 10, 80), ("blue", 100, 100, 70))
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
    photo(probe, ("blue", 60, 60, 16))  # a stranger, but red is the nearest template
    args = ("gallery", "search", probe, "--gallery", gallery, "--calibration", calib)
    text = cli(*args).output
    assert "answer: unknown (best score" in text and "open-set threshold at 16" in text
    assert "1. red" in text
    (answer,) = json.loads(cli(*args, "--json").output)
    assert answer["decision"]["identity"] == "unknown" and answer["decision"]["threshold"] == 0.999
    known = json.loads(cli(*args, "--json", "--threshold", "0.1").output)[0]
    assert known["decision"]["identity"] == "red" and known["faces_in_image"] == 1


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

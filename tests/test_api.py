"""The public API with the fake detector and encoders of tests/test_pipeline.py (no data), and
``import lrface`` staying cheap."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import pytest

import lrface
from lrface.pipeline import FacePipeline
from lrface.search.store import open_store
from tests.test_pipeline import ColourEncoder, SquareDetector, scene


def _png(path, *squares):
    cv2.imwrite(str(path), cv2.cvtColor(scene(*squares), cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture
def rec():
    pipe = FacePipeline(SquareDetector(), ColourEncoder("teacher"), None)
    return lrface.Recognizer.from_pipeline(pipe, "teacher")


def test_a_gallery_is_created_by_its_first_enrolment_and_searched(rec, tmp_path):
    red = [_png(tmp_path / f"red{i}.png", ("red", 10 + i, 10, 100)) for i in range(2)]
    blue = _png(tmp_path / "blue.png", ("blue", 20, 20, 120))
    with lrface.open_gallery(tmp_path / "g.db") as gallery:
        assert len(gallery) == 0 and not (tmp_path / "g.db").exists()
        report = gallery.enroll("Red", [*red, tmp_path / "missing.png"], recognizer=rec)
        assert report.added == 2 and report.skipped[0][0].endswith("missing.png")
        gallery.enroll("Blue", [blue.read_bytes()], recognizer=rec)
        assert gallery.names() == ["Blue", "Red"]
        probe = _png(tmp_path / "probe.png", ("red", 60, 60, 40))
        (answer,) = gallery.search(probe, recognizer=rec, threshold=0.5)
        assert answer.decision.identity == "Red" and answer.face.role == "teacher"
        (answer,) = gallery.search(probe, recognizer=rec)  # no calibration for this encoder
        assert answer.decision.threshold is None and "no open-set" in answer.decision.reason
        gallery.remove("Blue")
        assert gallery.names() == ["Red"]
    again = lrface.open_gallery(tmp_path / "g.db")
    assert len(again) == 1
    other = lrface.Recognizer.from_pipeline(
        FacePipeline(SquareDetector(), ColourEncoder("other"), None), "other"
    )
    with pytest.raises(ValueError, match="enrolled with encoder teacher"):
        again.search(probe, recognizer=other)


def test_verify_with_a_threshold(rec, tmp_path):
    a = _png(tmp_path / "a.png", ("red", 10, 10, 100))
    b = _png(tmp_path / "b.png", ("red", 30, 30, 90))
    result = rec.verify(a, b, threshold=0.9)
    assert result.same and result.threshold == 0.9 and result.a.face.width == 100


def test_importing_lrface_imports_no_heavy_library_until_the_api_is_used():
    code = (
        "import json, sys, lrface; heavy = ('torch', 'numpy', 'cv2', 'faiss'); "
        "print(json.dumps([lrface.__version__, [m for m in heavy if m in sys.modules]]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [lrface.__version__, []]
    assert {"Recognizer", "open_gallery", "watch"} <= set(dir(lrface))


def test_enrolment_follows_the_name_rules_and_is_audited_like_the_command(rec, tmp_path):
    red = _png(tmp_path / "red.png", ("red", 10, 10, 100))
    with lrface.open_gallery(tmp_path / "g.db") as gallery:
        assert gallery.enroll("Tony_Blair", [red], recognizer=rec).added == 1
        report = gallery.enroll("TONY BLAIR", [red], recognizer=rec)  # one person, two spellings
        assert report.added == 0 and "same identity as the enrolled 'Tony_Blair'" in str(
            report.skipped
        )
        with pytest.raises(ValueError, match="invalid identity name"):
            gallery.enroll("../etc", [red], recognizer=rec)
        copy = gallery.enroll("Someone Else", [red], recognizer=rec)  # the same photo
        assert copy.added == 1 and "already enrolled for 'Tony_Blair'" in copy.warnings[0]
        gallery.remove("tony blair")  # any spelling reaches the enrolled one
        assert gallery.names() == ["Someone Else"]
    with open_store(tmp_path / "g.db") as store:
        log = store.audit_log()
    assert [e.action for e in log] == ["remove", "enroll", "enroll"]
    assert all(e.actor.startswith("python:") for e in log)
    assert log[-1].target == log[0].target  # Tony_Blair's own entry redacted with him

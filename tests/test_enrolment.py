"""The one enrolment workflow: hashes skip what is enrolled, bad photos are skipped with their
reason, commits come every ``batch`` photos and the report counts what was committed."""

from __future__ import annotations

import cv2

from lrface.enrolment import Photo, enrol_photos, photos_from_files
from lrface.pipeline import FacePipeline
from tests.test_pipeline import ColourEncoder, SquareDetector, scene


def _png(*squares) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(scene(*squares), cv2.COLOR_RGB2BGR))[1].tobytes()


def test_enrol_photos_skips_known_and_bad_photos_and_commits_in_batches(tmp_path):
    pipe = FacePipeline(SquareDetector(), ColourEncoder("teacher"), None)
    red = [_png(("red", 10 + i, 10, 100)) for i in range(3)]
    photos = [Photo(f"{i}.png", data) for i, data in enumerate(red)]
    photos += [Photo("again.png", red[0]), Photo("black.png", _png()), Photo("x.jpg", b"junk")]
    photos.append(Photo("gone.png", None, "cannot read (No such file)"))
    commits = []
    report = enrol_photos(
        pipe.embed_image, "red", photos, set(), lambda b: commits.append(len(b)) or len(b), batch=2
    )
    assert commits == [2, 1] and report.added == 3 and report.identities == {"red"}
    assert report.already == 1  # the same bytes as 0.png
    reasons = dict(report.skipped)
    assert reasons["black.png"] == "no face found" and "gone.png" in reasons
    assert len(report.skipped) == 3 and report.crowded == 0


def test_photos_from_files_reads_lazily_and_names_unreadable_files(tmp_path):
    (tmp_path / "a.png").write_bytes(b"data")
    read = list(photos_from_files([tmp_path / "a.png", tmp_path / "missing.png"]))
    assert read[0] == Photo(str(tmp_path / "a.png"), b"data")
    assert read[1].data is None and read[1].error.startswith("cannot read")
